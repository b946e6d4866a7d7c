"""PyTorch as the peer the Numba kernels are measured against (the ``peers`` extra).

The same net (layer for layer, the same weights), batch and threads, in NCHW and in
channels-last. The whole step is timed like :func:`perfmodel.measure.node.measure_step` (forward, loss,
backward, SGD with momentum). Per-layer times are taken in isolation: each layer alone on an
input of its ledger shape, forward then backward of a random output gradient.

torch is imported only here and only when asked for; it is never a dependency of the package.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import kernels
from kernels import ClimateNet

from ..results import Repeats

INSTALL_HINT = "pip install 'perfmodel[peers]'  (torch==2.13.0, CPU)"


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _mirror_layer(layer: kernels.Layer):
    import torch  # optional peer (the peers extra), imported only when measured
    from torch import nn

    if isinstance(layer, kernels.Conv2d):
        m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                      layer.padding, bias=layer.bias is not None)
    elif isinstance(layer, kernels.ConvTranspose2d):
        m = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                               layer.stride, layer.padding, layer.output_padding,
                               bias=layer.bias is not None)
    elif isinstance(layer, kernels.Linear):
        m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    elif isinstance(layer, kernels.ReLU):
        return nn.ReLU()
    elif isinstance(layer, kernels.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    elif isinstance(layer, kernels.MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride)
    elif isinstance(layer, kernels.GlobalAvgPool2d):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    elif isinstance(layer, kernels.Dropout):
        return nn.Dropout(layer.p)
    elif isinstance(layer, kernels.Flatten):
        return nn.Flatten()
    else:
        raise TypeError(f"no PyTorch mirror for {type(layer).__name__}")
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            m.bias.copy_(torch.from_numpy(layer.bias))
    return m


def mirror(net: kernels.Net):
    """A torch module with the same layers and weights, and a loss function for it."""
    import torch  # optional peer (the peers extra), imported only when measured
    from torch import nn
    from torch.nn import functional as F

    if isinstance(net, ClimateNet):
        class Climate(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = nn.Sequential(*[_mirror_layer(l) for l in net.encoder.layers])
                self.heads = nn.ModuleList([_mirror_layer(h) for h in net.heads])
                self.decoder = nn.Sequential(*[_mirror_layer(l) for l in net.decoder.layers])

            def forward(self, x):
                z = self.encoder(x)
                return (*[h(z) for h in self.heads], self.decoder(z))

        def loss_fn(out, x, y):
            conf, cls, box, recon = out
            obj = torch.from_numpy(np.asarray(y.obj, np.int64))
            w = torch.where(obj > 0, 1.0, 0.5)
            det = (F.cross_entropy(conf, obj, reduction="none") * w).mean() \
                + (F.cross_entropy(cls, torch.from_numpy(np.asarray(y.cls, np.int64)),
                                   reduction="none") * obj).mean() \
                + 5.0 * ((box - torch.from_numpy(y.box)) ** 2 * obj[:, None]).mean()
            return det + 10.0 * F.mse_loss(recon, x)

        return Climate(), loss_fn
    model = nn.Sequential(*[_mirror_layer(l) for l in net.layers])
    return model, lambda out, x, y: F.cross_entropy(out, torch.from_numpy(np.asarray(y)))


def _to_layout(t, channels_last: bool):
    import torch  # optional peer (the peers extra), imported only when measured

    return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 \
        else t


def torch_step(net: kernels.Net, x: np.ndarray, y: Any, threads: int, channels_last: bool,
               warmup: int = 1) -> Callable[[], float]:
    """A callable that runs one training step of the torch mirror of ``net`` on the batch
    (x, y) and returns its wall time (s); ``warmup`` steps are run before it is returned."""
    import torch  # optional peer (the peers extra), imported only when measured

    torch.set_num_threads(threads)
    model, loss_fn = mirror(net)
    xt = _to_layout(torch.from_numpy(x), channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), xt, y)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    for _ in range(max(warmup, 1)):
        step()
    return step


@dataclass
class Interleaved:
    """Steps timed in rounds, ours then each peer's, so that a slow spell of a shared
    machine falls on both sides of a ratio. Times in seconds."""

    ours_s: Repeats
    theirs_s: dict[str, Repeats]

    def speed_ratio(self, peer: str) -> Repeats:
        """Ours over the peer's speed (the peer's step time over ours), round by round."""
        return Repeats([t / o for o, t in zip(self.ours_s.samples, self.theirs_s[peer].samples)])


def interleaved_steps(ours: Callable[[], float], theirs: dict[str, Callable[[], float]],
                      rounds: int) -> Interleaved:
    """``rounds`` rounds of one timed step each: ``ours()``, then every peer's in order."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds} is out of range (allowed >= 1)")
    o: list[float] = []
    t: dict[str, list[float]] = {k: [] for k in theirs}
    for _ in range(rounds):
        o.append(ours())
        for k, step in theirs.items():
            t[k].append(step())
    return Interleaved(Repeats(o), {k: Repeats(v) for k, v in t.items()})


def measure_layers(net: kernels.Net, batch: int, threads: int, channels_last: bool,
                   repeats: int = 5) -> dict[tuple[str, str], Repeats]:
    """Per-layer forward and backward times (s) of the torch mirror, each layer in isolation."""
    import torch  # optional peer (the peers extra), imported only when measured

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out: dict[tuple[str, str], Repeats] = {}
    layers = dict(net.named_layers())
    for row in net.ledger(batch):
        layer = layers.get(row.name)
        if layer is None:
            continue
        m = _mirror_layer(layer)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        m.train()
        xin = _to_layout(torch.from_numpy(
            rng.standard_normal(row.input_shape, dtype=np.float32)), channels_last)
        xin.requires_grad_(layer.needs_input_grad)
        dy = _to_layout(torch.from_numpy(
            rng.standard_normal(row.output_shape, dtype=np.float32)), channels_last)
        fw, bw = [], []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            yt = m(xin)
            t1 = time.perf_counter()
            if yt.requires_grad:
                yt.backward(dy)
            t2 = time.perf_counter()
            if i:  # the first round is warm-up
                fw.append(t1 - t0)
                bw.append(t2 - t1)
        out[(row.name, "forward")] = Repeats(fw)
        out[(row.name, "backward")] = Repeats(bw)
    return out
