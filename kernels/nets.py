"""The paper's two networks (Kurth et al., SC17), with size parameters for scaled variants."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .activation import Dropout, LeakyReLU, ReLU
from .base import Layer, LayerCost, Shape, ShapeError, check_int
from .conv import Conv2d, ConvTranspose2d
from .cuda import CudaClimateNet, CudaSequential
from .linear import Linear
from .loss import DetectionLoss, DetectionTarget, MSELoss
from .net import LayerTimer, Net, Sequential, timed_call
from .pool import GlobalAvgPool2d, MaxPool2d


def hep_net(image_size: int = 224, filters: int = 128, in_channels: int = 3, classes: int = 2,
            dropout: float = 0.5, seed: int = 0, device: str = "cpu",
            **optim: float) -> Sequential | CudaSequential:
    """The HEP classifier of NERSC's hep_cnn_benchmark ("the HEP Deep Learning Model used in
    arXiv:1708.05256").

    Input (3, image_size, image_size): total energy deposit, EM fraction, track multiplicity.
    Four units of [conv 3x3/``filters``, stride 1, same padding; ReLU; max-pool 2x2/2;
    dropout], then conv 3x3/``filters`` + ReLU + global average pool, fully connected
    ``filters`` -> ``classes``; softmax cross-entropy. At the defaults: 594,178 parameters
    (2.27 MiB) and 5.26 GFLOP forward per image. ``image_size`` must be a multiple of 16
    (64 gives NERSC's small variant). ``device="cuda"``: the same net (weights, names,
    ledger) on an NVIDIA GPU with the Numba CUDA kernels (:mod:`kernels.cuda`).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"hep_net: device={device!r} is not allowed (allowed: cpu, cuda)")
    check_int("hep_net", "image_size", image_size, 16)
    if image_size % 16:
        raise ValueError(f"hep_net: image_size={image_size} must be a multiple of 16 "
                         "(four 2x2 poolings)")
    check_int("hep_net", "filters", filters, 1)
    check_int("hep_net", "in_channels", in_channels, 1)
    check_int("hep_net", "classes", classes, 2)
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    c = in_channels
    for unit in range(4):
        layers += [Conv2d(c, filters, 3, 1, 1, rng=rng, reuse_output=True),
                   ReLU(inplace=True), MaxPool2d(2, 2, reuse_grad=True, reuse_output=True)]
        if dropout > 0:
            layers.append(Dropout(dropout, seed=seed * 7919 + unit, reuse_output=True))
        c = filters
    layers += [Conv2d(c, filters, 3, 1, 1, rng=rng, reuse_output=True), ReLU(inplace=True),
               GlobalAvgPool2d(),
               Linear(filters, classes, rng=rng)]
    net = Sequential(*layers, input_shape=(in_channels, image_size, image_size), **optim)
    # a scaled width or a dropout other than the published 0.5 is another workload: its own
    # name (the model matches node profiles to harness runs by it)
    net.name = ("hep" if filters == 128 else f"hep-f{filters}") + (
        "" if dropout == 0.5 else f"-d{dropout:g}")
    return CudaSequential(net, seed) if device == "cuda" else net


#: decoder of the full-size climate net: see :func:`climate_net` for the derivation
CLIMATE_ENCODER = (128, 256, 512, 768, 1024, 1280)
CLIMATE_DECODER = (384, 192, 96, 48)


class ClimateNet(Net):
    """Semi-supervised climate net: encoder, three detection heads, decoder (autoencoder).

    ``forward(x)`` returns ``(confidence, class, coordinates, reconstruction)``; the loss is
    detection + ``recon_weight`` x reconstruction MSE (Racah et al. 2017 use 10).
    """

    name = "climate"

    def __init__(self, encoder: Sequential, heads: list[Conv2d], decoder: Sequential,
                 input_shape: Shape, recon_weight: float = 10.0, **optim: float) -> None:
        super().__init__(**optim)
        self.encoder, self.heads, self.decoder = encoder, heads, decoder
        for n, h in zip(("conf", "cls", "box"), heads):
            h.name = n
        self.decoder.layers[0].needs_input_grad = True
        self.input_shape = tuple(input_shape)
        self.recon_weight = float(recon_weight)
        self.det_loss = DetectionLoss()
        self.recon_loss = MSELoss()

    def named_layers(self) -> list[tuple[str, Layer]]:
        return (self.encoder.named_layers() + [(h.name, h) for h in self.heads]
                + self.decoder.named_layers())

    def _layer_costs(self, shape: Shape) -> list[LayerCost]:
        rows = self.encoder._layer_costs(shape)
        z = rows[-1].output_shape
        rows += [h.cost(z) for h in self.heads]
        rows += self.decoder._layer_costs(z)
        return rows

    def grid_shape(self, batch: int = 1) -> Shape:
        return self.encoder.output_shape((batch, *self.input_shape))

    def loss_costs(self, batch: int) -> list[LayerCost]:
        z = self.grid_shape(batch)
        heads = tuple(h.output_shape(z) for h in self.heads)
        fd, bd = self.det_loss.flops(heads)
        x = (batch, *self.input_shape)
        fr, br = self.recon_loss.flops(x)
        return [LayerCost("det_loss", "detection", z, (1,), 0, fd, bd, 0),
                LayerCost("recon_loss", "mse", x, (1,), 0, fr, br, 0)]

    def forward(self, x: np.ndarray, timer: LayerTimer | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._check_batch(x)
        z = self.encoder.forward(x, timer)
        conf, cls, box = (timed_call(timer, h.name, "forward", h.forward, z) for h in self.heads)
        recon = self.decoder.forward(z, timer)
        return conf, cls, box, recon

    def backward(self, d_conf: np.ndarray, d_cls: np.ndarray, d_box: np.ndarray,
                 d_recon: np.ndarray, timer: LayerTimer | None = None) -> None:
        dz = self.decoder.backward(d_recon, timer)
        for h, d in zip(self.heads, (d_conf, d_cls, d_box)):
            dz += timed_call(timer, h.name, "backward", h.backward, d)
        self.encoder.backward(dz, timer)

    def loss(self, outputs: tuple[np.ndarray, ...], x: np.ndarray,
             target: DetectionTarget) -> float:
        conf, cls, box, recon = outputs
        if recon.shape != x.shape:
            raise ShapeError(f"ClimateNet: reconstruction {recon.shape} does not match input "
                             f"{x.shape}: the image size must be a multiple of 64")
        return (self.det_loss.forward((conf, cls, box), target)
                + self.recon_weight * self.recon_loss.forward(recon, x))

    def compute_gradients(self, x: np.ndarray, target: DetectionTarget,
                          timer: LayerTimer | None = None) -> float:
        outs = self.forward(x, timer)
        loss = timed_call(timer, "loss", "forward", self.loss, outs, x, target)

        def grads():
            d_conf, d_cls, d_box = self.det_loss.backward()
            return d_conf, d_cls, d_box, self.recon_weight * self.recon_loss.backward()

        d = timed_call(timer, "loss", "backward", grads)
        self.backward(*d, timer=timer)
        return loss


def climate_net(image_size: int | tuple[int, int] = 768, in_channels: int = 16,
                filters: Sequence[int] = CLIMATE_ENCODER,
                decoder_filters: Sequence[int] = CLIMATE_DECODER, classes: int = 4,
                seed: int = 0, device: str = "cpu", **optim: float
                ) -> ClimateNet | CudaClimateNet:
    """The semi-supervised climate net of Racah et al. ("ExtremeWeather", NIPS 2017) as the
    15PF paper describes it: 16 input channels, 9 convolutions, 5 deconvolutions, 302.1 MiB.

    Derivation (the paper's exact layer list is not public):

    * Encoder, from the published code: six conv 5x5, stride 2, pad 2, with ``filters`` =
      [128, 256, 512, 768, 1024, 1280] and LeakyReLU(0.1); 768x768 -> 12x12; 253.3 MiB.
    * Heads, from the published code: three conv 3x3, pad 1 on the 12x12 grid for box confidence
      (2), class (``classes`` = 4) and coordinates (4): convolutions 7–9, 0.44 MiB.
    * Decoder (assumed): 5 transposed convolutions must climb back from 12x12 to 768x768 (x64);
      four 5x5 stride-2 (pad 2, output_padding 1, each x2) and a final 4x4 stride-4 (x4) to 16
      channels, LeakyReLU(0.1) between them and a linear output. The paper's 302.1 MiB leaves
      48.4 MiB for the decoder; halving the channels at each step from ``decoder_filters`` =
      [384, 192, 96, 48] gives 56.2 MiB, a total of 309.9 MiB (+2.6%, inside the 20% the
      project allows for this unpublished layer list).
    * Input 16x768x768 by default; ``image_size=(768, 1152)`` gives the data set's native size.
      Any size that is a multiple of 64 works; scaled variants shrink ``filters`` too.

    ``device="cuda"``: the same net (weights, names, ledger) on an NVIDIA GPU with the Numba
    CUDA kernels (:class:`kernels.cuda.CudaClimateNet`).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"climate_net: device={device!r} is not allowed (allowed: cpu, cuda)")
    h, w = (image_size, image_size) if not isinstance(image_size, (tuple, list)) else image_size
    for name, v in (("image height", h), ("image width", w)):
        check_int("climate_net", name, v, 64)
        if v % 64:
            raise ValueError(f"climate_net: {name}={v} must be a multiple of 64 "
                             "(six stride-2 convolutions and their mirror)")
    if len(filters) != 6:
        raise ValueError(f"climate_net: filters must list 6 encoder widths, got {list(filters)}")
    if len(decoder_filters) != 4:
        raise ValueError("climate_net: decoder_filters must list 4 widths (the fifth "
                         f"deconvolution outputs the input channels), got {list(decoder_filters)}")
    rng = np.random.default_rng(seed)
    enc: list[Layer] = []
    c = in_channels
    for f in filters:
        enc += [Conv2d(c, f, 5, 2, 2, rng=rng, reuse_output=True),
                LeakyReLU(0.1, inplace=True)]
        c = f
    heads = [Conv2d(c, k, 3, 1, 1, rng=rng) for k in (2, classes, 4)]
    dec: list[Layer] = []
    for f in decoder_filters:
        dec += [ConvTranspose2d(c, f, 5, 2, 2, 1, rng=rng), LeakyReLU(0.1, inplace=True)]
        c = f
    dec.append(ConvTranspose2d(c, in_channels, 4, 4, 0, rng=rng))
    enc_names = [f"{'conv' if i % 2 == 0 else 'lrelu'}{i // 2 + 1}" for i in range(len(enc))]
    dec_names = [f"{'deconv' if i % 2 == 0 else 'dlrelu'}{i // 2 + 1}" for i in range(len(dec))]
    shape = (in_channels, h, w)
    encoder = Sequential(*enc, input_shape=shape, names=enc_names)
    decoder = Sequential(*dec, names=dec_names, first_needs_grad=True)
    net = ClimateNet(encoder, heads, decoder, shape, **optim)
    return CudaClimateNet(net, seed) if device == "cuda" else net
