"""Common networks as ledgers, built from layer specifications without allocating weights.

A planner needs, per layer, the parameters, the FLOP and the gradient bytes in backward
order; it never needs the weights (VGG-16's 138 M parameters would be 553 MB). :class:`Spec`
follows the shapes through a network's definition and writes one :class:`~kernels.base.
LayerCost` row per layer with the same conventions as the kernels' own layers (2 FLOP per
multiply-add; convolutions count every tap, padded ones too; the first layer computes no
data gradient), plus one parameter blob per weight and per bias, as the harness exchanges
them.

Layers the kernels do not implement are counted as follows (forward, backward-data,
backward-weight, per element of the layer's output unless stated):

* batch normalization (training): forward 8 (mean 1, variance 3, normalize and scale 4),
  backward-data 12, backward-weight 3; parameters scale and shift per channel;
* ReLU: 1, 1, 0; residual add: 1, 0, 0 (its gradient is passed through);
* average pooling (k x k): k^2 per output element forward, 1 per input element backward;
  max pooling as the kernels' MaxPool2d.

The definitions follow torchvision's (ResNet v1.5: the stride sits on the 3x3 convolution;
VGG-16 configuration D; Inception-V3 with its auxiliary classifier; DeepLabv3 on a dilated
ResNet-50 with its auxiliary head), whose parameter counts the tests check exactly: ResNet-50
25,557,032, ResNet-101 44,549,160, VGG-16 138,357,544, Inception-V3 27,161,264, DeepLabv3-
ResNet-50 42,004,074 (torchvision's model documentation). Multiply-adds of the convolutions
and fully connected layers, forward, per 224x224 (299x299; DeepLabv3 520x520) image: 4.09 G,
7.80 G, 15.47 G, 5.71 G and 178.72 G (the "GFLOPS" column of the same documentation, which
counts multiply-adds); this ledger's forward FLOP of those layers is twice that.
Dropout: 1, 1, 0 per element; bilinear upsampling: 8, 8, 0 per output element (4 taps);
LeakyReLU: 2, 2, 0. CosmoFlow, 3-D, has no published parameter count we found: its 5,597,604
follow from the MLPerf HPC reference definition, term by term in the tests.
"""

from __future__ import annotations

import math
from typing import Callable

from .base import LayerCost, Ledger, Shape

Dims = tuple[int, ...]  # (channels, height, width) of one sample; (c, d, h, w) in 3-D


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Spec:
    """A network definition as costs only: each call adds one layer's row (at ``batch``) and
    returns the output dims; branches are expressed by passing the dims a branch starts from.

    ``blobs`` lists the parameter tensors' sizes (elements) in forward order.
    """

    def __init__(self, name: str, input_dims: Dims, batch: int = 1) -> None:
        self.name, self.input_dims, self.batch = name, input_dims, batch
        self.rows: list[LayerCost] = []
        self.blobs: list[int] = []
        self.blob_rows: list[int] = []  # the row (layer) of each blob
        self._n: dict[str, int] = {}

    def _add(self, kind: str, x: Dims, y: Dims, params: list[int], f: float, bd: float,
             bw: float, label: str | None = None) -> Dims:
        self._n[kind] = self._n.get(kind, 0) + 1
        name = label or f"{kind}{self._n[kind]}"
        if not self.rows:  # the first layer: no data gradient
            bd = 0
        b = self.batch
        self.rows.append(LayerCost(name, kind, (b, *x), (b, *y), int(sum(params)),
                                   int(b * f), int(b * bd), int(b * bw)))
        self.blobs += [p for p in params if p]
        self.blob_rows += [len(self.rows) - 1 for p in params if p]
        return y

    def conv(self, x: Dims, c_out: int, k: int | tuple[int, int], s: int = 1,
             p: int | tuple[int, int] = 0, bias: bool = False, label: str | None = None,
             d: int = 1) -> Dims:
        """A convolution; ``d``: dilation (atrous), which spreads the k x k taps d apart
        without adding any: the same FLOP per output element."""
        c, h, w = x
        (kh, kw), (ph, pw), (sh, sw) = _pair(k), _pair(p), _pair(s)
        ho = (h + 2 * ph - d * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - d * (kw - 1) - 1) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"{self.name}: a {kh}x{kw} convolution does not fit {h}x{w}")
        mac = c_out * ho * wo * c * kh * kw
        b = c_out * ho * wo if bias else 0
        return self._add("conv", x, (c_out, ho, wo),
                         [c_out * c * kh * kw, c_out if bias else 0],
                         2 * mac + b, 2 * mac, 2 * mac + b, label)

    def conv3d(self, x: Dims, c_out: int, k: int, bias: bool = True) -> Dims:
        """A 3-D convolution, stride 1, 'same' padding (Keras pads k - 1 taps, after the
        input for even k): every tap counted, padded ones too."""
        c, dd, h, w = x
        mac = c_out * dd * h * w * c * k ** 3
        b = c_out * dd * h * w if bias else 0
        return self._add("conv3d", x, (c_out, dd, h, w), [c_out * c * k ** 3,
                                                          c_out if bias else 0],
                         2 * mac + b, 2 * mac, 2 * mac + b)

    def maxpool3d(self, x: Dims, k: int) -> Dims:
        c, dd, h, w = x
        y = (c, dd // k, h // k, w // k)
        out = math.prod(y)
        return self._add("maxpool3d", x, y, [], out * (k ** 3 - 1), out, 0)

    def leaky_relu(self, x: Dims) -> Dims:
        e = math.prod(x)
        return self._add("leaky_relu", x, x, [], 2 * e, 2 * e, 0)

    def bn(self, x: Dims) -> Dims:
        e = math.prod(x)
        return self._add("bn", x, x, [x[0], x[0]], 8 * e, 12 * e, 3 * e)

    def relu(self, x: Dims) -> Dims:
        e = math.prod(x)
        return self._add("relu", x, x, [], e, e, 0)

    def dropout(self, x: Dims) -> Dims:
        e = math.prod(x)
        return self._add("dropout", x, x, [], e, e, 0)

    def upsample(self, x: Dims, h: int, w: int) -> Dims:
        """Bilinear resize to h x w: 4 taps per output element, 2 FLOP each, both ways."""
        e = x[0] * h * w
        return self._add("upsample", x, (x[0], h, w), [], 8 * e, 8 * e, 0)

    def conv_bn_relu(self, x: Dims, c_out: int, k, s: int = 1, p=0) -> Dims:
        """torchvision's BasicConv2d / a ResNet convolution: no bias, then BN and ReLU."""
        return self.relu(self.bn(self.conv(x, c_out, k, s, p)))

    def maxpool(self, x: Dims, k: int, s: int, p: int = 0) -> Dims:
        c, h, w = x
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        out = c * ho * wo
        return self._add("maxpool", x, (c, ho, wo), [], out * (k * k - 1), out, 0)

    def avgpool(self, x: Dims, k: int, s: int, p: int = 0) -> Dims:
        c, h, w = x
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return self._add("avgpool", x, (c, ho, wo), [], c * ho * wo * k * k, c * h * w, 0)

    def global_avgpool(self, x: Dims) -> Dims:
        c, h, w = x
        return self._add("avgpool", x, (c, 1, 1), [], c * h * w + c, c * h * w, 0)

    def add(self, x: Dims, shortcut: Dims | None = None) -> Dims:
        """A residual add: ``x`` plus ``shortcut`` (the block's input or its projection; the
        costs need only x's dims, a framework build needs both)."""
        e = math.prod(x)
        return self._add("add", x, x, [], e, 0, 0)

    def fc(self, x: Dims, n_out: int, bias: bool = True, label: str | None = None) -> Dims:
        n_in = math.prod(x)
        mac = n_in * n_out
        b = n_out if bias else 0
        return self._add("fc", x, (n_out, 1, 1), [n_in * n_out, b], 2 * mac + b, 2 * mac,
                         2 * mac + b, label)

    def concat(self, *branches: Dims) -> Dims:
        """Channels of branches of the same size, side by side (no cost)."""
        if len({(h, w) for _, h, w in branches}) != 1:
            raise ValueError(f"{self.name}: branches of different sizes {branches}")
        return (sum(c for c, _, _ in branches), branches[0][1], branches[0][2])

    def ledger(self) -> Ledger:
        return Ledger(batch=self.batch, rows=list(self.rows),
                      update_flop=6 * sum(self.blobs))

    def conv_flop(self) -> int:
        """Forward FLOP of the convolutions and fully connected layers alone (2 per MAC plus
        the bias adds): what published multiply-add counts compare to."""
        return sum(r.forward_flop for r in self.rows if r.kind in ("conv", "conv3d", "fc"))


# --- the networks --------------------------------------------------------------------------

def vgg16(image_size: int = 224, batch: int = 1, classes: int = 1000,
          cls: type[Spec] = Spec) -> Spec:
    """VGG-16 (Simonyan & Zisserman 2015, configuration D), as torchvision builds it."""
    s = cls("vgg16", (3, image_size, image_size), batch)
    x = s.input_dims
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512,
              512, "M"):
        x = s.maxpool(x, 2, 2) if v == "M" else s.relu(s.conv(x, v, 3, 1, 1, bias=True))
    if (x[1], x[2]) != (7, 7):  # torchvision's adaptive pooling to 7x7
        x = s.avgpool(x, x[1] // 7, x[1] // 7)
    for n in (4096, 4096):
        x = s.relu(s.fc(x, n))
    s.fc(x, classes)
    return s


def _resnet(name: str, blocks: tuple[int, ...], image_size: int, batch: int,
            classes: int, dilate: tuple[bool, ...] = (False, False, False),
            spec: Spec | None = None, taps: dict | None = None,
            cls: type[Spec] = Spec) -> Spec:
    """Bottleneck ResNet (He et al. 2016) in torchvision's v1.5 form. ``dilate``: for stages
    2-4, replace the stride by dilation (torchvision's replace_stride_with_dilation: the
    stage's first block keeps the previous dilation, the rest use the doubled one). With
    ``classes`` = 0 the pooling and classifier are left out (a backbone); ``taps`` receives
    each stage's output dims."""
    s = spec or cls(name, (3, image_size, image_size), batch)
    x = s.conv_bn_relu(s.input_dims, 64, 7, 2, 3)
    x = s.maxpool(x, 3, 2, 1)
    dilation = 1
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        first_stride, previous = (2 if stage > 0 else 1), dilation
        if stage > 0 and dilate[stage - 1]:
            dilation, first_stride = dilation * first_stride, 1
        for i in range(n):
            stride, d = (first_stride, previous) if i == 0 else (1, dilation)
            y = s.conv_bn_relu(x, width, 1)
            y = s.relu(s.bn(s.conv(y, width, 3, stride, d, d=d)))
            y = s.bn(s.conv(y, 4 * width, 1))
            # the shortcut: a projection in the stage's first block, else the block's input
            short = s.bn(s.conv(x, 4 * width, 1, stride)) if i == 0 else x
            x = s.relu(s.add(y, short))
        if taps is not None:
            taps[stage] = x
    if classes:
        x = s.global_avgpool(x)
        s.fc(x, classes)
    return s


def resnet50(image_size: int = 224, batch: int = 1, classes: int = 1000,
             cls: type[Spec] = Spec) -> Spec:
    return _resnet("resnet50", (3, 4, 6, 3), image_size, batch, classes, cls=cls)


def resnet101(image_size: int = 224, batch: int = 1, classes: int = 1000,
              cls: type[Spec] = Spec) -> Spec:
    return _resnet("resnet101", (3, 4, 23, 3), image_size, batch, classes, cls=cls)


def inception_v3(image_size: int = 299, batch: int = 1, classes: int = 1000,
                 aux: bool = True, cls: type[Spec] = Spec) -> Spec:
    """Inception-V3 (Szegedy et al. 2016) as torchvision builds it, the auxiliary classifier
    included when ``aux`` (it trains, so its parameters are exchanged)."""
    s = cls("inception_v3", (3, image_size, image_size), batch)
    cbr = s.conv_bn_relu
    x = cbr(s.input_dims, 32, 3, 2)
    x = cbr(x, 32, 3)
    x = cbr(x, 64, 3, 1, 1)
    x = s.maxpool(x, 3, 2)
    x = cbr(x, 80, 1)
    x = cbr(x, 192, 3)
    x = s.maxpool(x, 3, 2)

    def block_a(x: Dims, pool: int) -> Dims:
        b1 = cbr(x, 64, 1)
        b5 = cbr(cbr(x, 48, 1), 64, 5, 1, 2)
        b3 = cbr(cbr(cbr(x, 64, 1), 96, 3, 1, 1), 96, 3, 1, 1)
        bp = cbr(s.avgpool(x, 3, 1, 1), pool, 1)
        return s.concat(b1, b5, b3, bp)

    def block_b(x: Dims) -> Dims:
        b3 = cbr(x, 384, 3, 2)
        bd = cbr(cbr(cbr(x, 64, 1), 96, 3, 1, 1), 96, 3, 2)
        return s.concat(b3, bd, s.maxpool(x, 3, 2))

    def block_c(x: Dims, c7: int) -> Dims:
        b1 = cbr(x, 192, 1)
        b7 = cbr(cbr(cbr(x, c7, 1), c7, (1, 7), 1, (0, 3)), 192, (7, 1), 1, (3, 0))
        bd = cbr(x, c7, 1)
        for k, p, c in (((7, 1), (3, 0), c7), ((1, 7), (0, 3), c7), ((7, 1), (3, 0), c7),
                        ((1, 7), (0, 3), 192)):
            bd = cbr(bd, c, k, 1, p)
        bp = cbr(s.avgpool(x, 3, 1, 1), 192, 1)
        return s.concat(b1, b7, bd, bp)

    def block_d(x: Dims) -> Dims:
        b3 = cbr(cbr(x, 192, 1), 320, 3, 2)
        b7 = cbr(cbr(cbr(cbr(x, 192, 1), 192, (1, 7), 1, (0, 3)), 192, (7, 1), 1, (3, 0)),
                 192, 3, 2)
        return s.concat(b3, b7, s.maxpool(x, 3, 2))

    def block_e(x: Dims) -> Dims:
        b1 = cbr(x, 320, 1)
        b3 = cbr(x, 384, 1)
        b3 = s.concat(cbr(b3, 384, (1, 3), 1, (0, 1)), cbr(b3, 384, (3, 1), 1, (1, 0)))
        bd = cbr(cbr(x, 448, 1), 384, 3, 1, 1)
        bd = s.concat(cbr(bd, 384, (1, 3), 1, (0, 1)), cbr(bd, 384, (3, 1), 1, (1, 0)))
        bp = cbr(s.avgpool(x, 3, 1, 1), 192, 1)
        return s.concat(b1, b3, bd, bp)

    for pool in (32, 64, 64):
        x = block_a(x, pool)
    x = block_b(x)
    for c7 in (128, 160, 160, 192):
        x = block_c(x, c7)
    if aux:
        a = cbr(s.avgpool(x, 5, 3), 128, 1)
        a = s.global_avgpool(cbr(a, 768, 5))
        s.fc(a, classes, label="aux_fc")
    x = block_d(x)
    x = block_e(x)
    x = block_e(x)
    s.fc(s.global_avgpool(x), classes)
    return s


def deeplabv3_resnet50(image_size: int = 520, batch: int = 1, classes: int = 21,
                       aux: bool = True, cls: type[Spec] = Spec) -> Spec:
    """DeepLabv3 (Chen et al. 2017, arXiv 1706.05587) on a dilated ResNet-50 (output stride
    8), as torchvision's ``deeplabv3_resnet50`` builds it: ASPP with rates 12, 24, 36 and an
    image-pooling branch, 256 channels, a 3x3 head and the classifier; the auxiliary FCN head
    on stage 3 when ``aux`` (torchvision loads its weights with it, and it trains)."""
    s = cls("deeplabv3_resnet50", (3, image_size, image_size), batch)
    taps: dict[int, Dims] = {}
    _resnet("deeplabv3_resnet50", (3, 4, 6, 3), image_size, batch, 0,
            dilate=(False, True, True), spec=s, taps=taps)
    x = taps[3]
    h, w = x[1], x[2]
    cbr = s.conv_bn_relu
    branches = [cbr(x, 256, 1)]
    branches += [s.relu(s.bn(s.conv(x, 256, 3, 1, r, d=r))) for r in (12, 24, 36)]
    pooled = cbr(s.global_avgpool(x), 256, 1)
    branches.append(s.upsample(pooled, h, w))
    y = s.dropout(cbr(s.concat(*branches), 256, 1))
    y = cbr(y, 256, 3, 1, 1)
    y = s.conv(y, classes, 1, bias=True)
    s.upsample(y, image_size, image_size)
    if aux:
        a = s.dropout(cbr(taps[2], 256, 3, 1, 1))
        s.upsample(s.conv(a, classes, 1, bias=True), image_size, image_size)
    return s


def cosmoflow(image_size: int = 128, batch: int = 1, conv_size: int = 32,
              layers: int = 5, cls: type[Spec] = Spec) -> Spec:
    """CosmoFlow (Mathuriya et al., SC18, arXiv 1808.04728) as the MLPerf HPC reference
    builds it (mlcommons/hpc, cosmoflow/models/cosmoflow.py with configs/cosmo.yaml): a
    128^3 x 4 volume; 5 x [Conv3D 2x2x2 'same', filters 32 doubling, LeakyReLU, MaxPool3D 2];
    Dense 128, 64 (LeakyReLU, dropout 0.5), Dense 4 (tanh)."""
    s = cls("cosmoflow", (4, image_size, image_size, image_size), batch)
    x = s.input_dims
    for i in range(layers):
        if min(x[1:]) < 2:
            raise ValueError(f"cosmoflow: {image_size}^3 is too small for {layers} poolings")
        x = s.maxpool3d(s.leaky_relu(s.conv3d(x, conv_size * 2 ** i, 2)), 2)
    x = (math.prod(x), 1, 1)
    for n in (128, 64):
        x = s.dropout(s.leaky_relu(s.fc(x, n)))
    s.fc(x, 4)
    return s


#: the networks by name: builders (image_size, batch, cls=Spec) -> Spec; ``cls`` a subclass of
#: Spec that also records the graph (a framework's build of the same definition)
ZOO: dict[str, Callable[..., Spec]] = {
    "resnet50": resnet50, "resnet101": resnet101, "vgg16": vgg16,
    "inception_v3": inception_v3, "deeplabv3_resnet50": deeplabv3_resnet50,
    "cosmoflow": cosmoflow,
}


def from_table(rows: list[dict], name: str = "table", batch: int = 1) -> Spec:
    """A network given as a layer table (forward order): ``layer``, ``params`` and
    ``forward_flop`` per sample; backward is taken as twice the forward (data and weight
    gradients, as for convolutions and fully connected layers), the first layer's data
    gradient excluded, and each layer's parameters as one blob."""
    s = Spec(name, (0, 0, 0), batch)
    for r in rows:
        p, f = int(r["params"]), float(r["forward_flop"])
        if p < 0 or f < 0:
            raise ValueError(f"{name}: layer {r['layer']!r} has params={p}, forward_flop={f}"
                             " (both must be >= 0)")
        s._add("layer", (0, 0, 0), (0, 0, 0), [p], f, f, f if p else 0, label=str(r["layer"]))
    return s


__all__ = ["Spec", "ZOO", "vgg16", "resnet50", "resnet101", "inception_v3",
           "deeplabv3_resnet50", "cosmoflow", "from_table",
           "Shape"]
