"""A Sequential net on a CUDA device: the CPU net's layers, ledger and names, device compute.

``forward`` and ``backward`` pass device arrays from layer to layer; the loss runs on the host
(:mod:`.layers`); the SGD update with momentum runs on the device (``ops.sgd_momentum``, the
CPU optimizer's formula and FLOP). With a :class:`~kernels.net.LayerTimer` each layer is
followed by a device synchronize, so its wall time is its kernels' time (timing only: without
a timer nothing waits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from ..base import Ledger
from ..net import LayerTimer, Sequential, timed_call
from . import ops
from .layers import CudaLayer, to_device


def synced(fn):
    """fn, followed by a device synchronize (for timing)."""

    def run(*args):
        out = fn(*args)
        cuda.synchronize()
        return out
    return run


def batch_on_device(cpu_net: Any, x):
    """``x`` on the device: a host batch is checked against ``cpu_net``'s input shape and
    copied over as float32; a device array is returned as it is."""
    if isinstance(x, np.ndarray):
        cpu_net._check_batch(x)
        x = cuda.to_device(np.ascontiguousarray(x, np.float32))
    return x


def sgd_update(layers: list[CudaLayer], velocity: dict, cfg: dict, lr: float | None = None
               ) -> None:
    """SGD with momentum on the device over ``layers`` (kernels.optim.SGD's update, with
    ``cfg``'s lr, momentum and weight decay); ``velocity`` keeps each parameter's buffer."""
    lr = cfg["lr"] if lr is None else float(lr)
    for i, l in enumerate(layers):
        for p, w, g in l.params():
            v = velocity.get((i, p))
            if v is None:
                v = velocity[(i, p)] = cuda.to_device(np.zeros(w.shape, np.float32))
            ops.sgd_momentum[ops.blocks(w.size), ops.THREADS](
                w.reshape(w.size), g.reshape(g.size), v.reshape(v.size), np.float32(lr),
                np.float32(cfg["momentum"]), np.float32(cfg["weight_decay"]))


class CudaSequential:
    """The device twin of a :class:`~kernels.net.Sequential` (see the module docstring)."""

    device = "cuda"

    def __init__(self, net: Sequential, seed: int = 0) -> None:
        self.cpu = net
        self.name = getattr(net, "name", "net")
        self.input_shape = net.input_shape
        self.names = list(net.names)
        self.layers: list[CudaLayer] = [to_device(l, seed + i)
                                        for i, l in enumerate(net.layers)]
        self.loss = net.loss
        self.optimizer_config = dict(net.optimizer_config)
        self._velocity: dict[tuple[int, str], Any] = {}

    def named_layers(self) -> list[tuple[str, CudaLayer]]:
        return list(zip(self.names, self.layers))

    def ledger(self, batch: int) -> Ledger:
        return self.cpu.ledger(batch)

    def param_count(self) -> int:
        return self.cpu.param_count()

    def train(self) -> "CudaSequential":
        for l in self.layers:
            l.training = True
        return self

    def eval(self) -> "CudaSequential":
        for l in self.layers:
            l.training = False
        return self

    def forward(self, x, timer: LayerTimer | None = None):
        """Device output of a batch (a host array is copied to the device first)."""
        x = batch_on_device(self.cpu, x)
        for n, l in zip(self.names, self.layers):
            x = timed_call(timer, n, "forward", synced(l.forward) if timer else l.forward, x)
        return x

    def backward(self, dy, timer: LayerTimer | None = None):
        for n, l in zip(reversed(self.names), reversed(self.layers)):
            dy = timed_call(timer, n, "backward", synced(l.backward) if timer else l.backward,
                            dy)
        return dy

    def compute_gradients(self, x, y: Any, timer: LayerTimer | None = None) -> float:
        """Forward, the loss on the host, backward: fills the device gradients."""
        out = self.forward(x, timer)

        def loss_on_host(o):
            return self.loss.forward(o.copy_to_host(), y)

        loss = timed_call(timer, "loss", "forward", loss_on_host, out)
        dy = timed_call(timer, "loss", "backward",
                        lambda: cuda.to_device(np.ascontiguousarray(self.loss.backward(),
                                                                    np.float32)))
        self.backward(dy, timer)
        return float(loss)

    def step(self, lr: float | None = None) -> None:
        """SGD with momentum on the device (kernels.optim.SGD's update)."""
        sgd_update(self.layers, self._velocity, self.optimizer_config, lr)

    def train_step(self, x, y: Any, lr: float | None = None,
                   timer: LayerTimer | None = None) -> float:
        loss = self.compute_gradients(x, y, timer)
        timed_call(timer, "update", "update", synced(self.step) if timer else self.step, lr)
        return loss

    def to_host(self) -> Sequential:
        """Copy the device parameters and gradients back into the CPU net, and return it."""
        for l in self.layers:
            l.to_host()
        return self.cpu
