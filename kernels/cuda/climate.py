"""The climate net on a CUDA device: encoder, three detection heads and decoder on the device.

The twin of :class:`kernels.nets.ClimateNet` (same layers, names, ledger and weights). The
detection loss runs on the host, on the heads' outputs (a 12x12 grid at 768x768: a few KiB
copied each way). The reconstruction loss runs on the device (``ops.mse_grad``): the
decoder's output is the size of the input, 37.7 MB per image at 16x768x768, and copying it
to the host and back would time the PCIe bus, not the net. The SGD update runs on the
device with the net's one optimizer configuration over all layers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from ..base import Ledger
from ..loss import DetectionTarget
from ..net import LayerTimer, timed_call
from . import ops
from .layers import CudaLayer, to_device
from .net import CudaSequential, batch_on_device, sgd_update, synced


class CudaClimateNet:
    """The device twin of a :class:`~kernels.nets.ClimateNet` (see the module docstring)."""

    device = "cuda"

    def __init__(self, net: Any, seed: int = 0) -> None:
        self.cpu = net
        self.name = net.name
        self.input_shape = net.input_shape
        self.encoder = CudaSequential(net.encoder, seed)
        self.heads: list[CudaLayer] = [to_device(h) for h in net.heads]
        self.decoder = CudaSequential(net.decoder, seed)
        self.optimizer_config = dict(net.optimizer_config)
        self._velocity: dict[tuple[int, str], Any] = {}

    def named_layers(self) -> list[tuple[str, CudaLayer]]:
        return (self.encoder.named_layers() + [(h.name, h) for h in self.heads]
                + self.decoder.named_layers())

    def ledger(self, batch: int) -> Ledger:
        return self.cpu.ledger(batch)

    def param_count(self) -> int:
        return self.cpu.param_count()

    def train(self) -> "CudaClimateNet":
        for _, l in self.named_layers():
            l.training = True
        return self

    def eval(self) -> "CudaClimateNet":
        for _, l in self.named_layers():
            l.training = False
        return self

    def forward(self, x, timer: LayerTimer | None = None) -> tuple:
        """Device (confidence, class, coordinates, reconstruction) of a batch (a host array
        is copied to the device first)."""
        x = batch_on_device(self.cpu, x)
        z = self.encoder.forward(x, timer)
        heads = tuple(timed_call(timer, h.name, "forward",
                                 synced(h.forward) if timer else h.forward, z)
                      for h in self.heads)
        return (*heads, self.decoder.forward(z, timer))

    def _reconstruction_loss(self, recon, x):
        """Mean squared error on the device; returns (loss, its gradient times the weight)."""
        if recon.shape != x.shape:
            raise ValueError(f"CudaClimateNet: reconstruction {recon.shape} does not match "
                             f"input {x.shape}: the image size must be a multiple of 64")
        grad = cuda.device_array(recon.shape, np.float32)
        acc = cuda.to_device(np.zeros(1, np.float64))
        n = recon.size
        ops.mse_grad[ops.blocks(n), ops.THREADS](
            recon.reshape(n), x.reshape(n), np.float32(2.0 * self.cpu.recon_weight / n),
            grad.reshape(n), acc)
        return float(acc.copy_to_host()[0]) / n, grad

    def compute_gradients(self, x, target: DetectionTarget,
                          timer: LayerTimer | None = None) -> float:
        """Forward, the detection loss on the host and the reconstruction loss on the
        device, backward: fills the device gradients. Returns the CPU net's loss."""
        x = batch_on_device(self.cpu, x)
        *heads, recon = self.forward(x, timer)

        def loss():
            det = self.cpu.det_loss.forward(tuple(h.copy_to_host() for h in heads), target)
            mse, d_recon = self._reconstruction_loss(recon, x)
            return det + self.cpu.recon_weight * mse, d_recon

        value, d_recon = timed_call(timer, "loss", "forward", loss)
        d_heads = timed_call(timer, "loss", "backward", lambda: [
            cuda.to_device(np.ascontiguousarray(d, np.float32))
            for d in self.cpu.det_loss.backward()])
        dz = self.decoder.backward(d_recon, timer)
        for h, d in zip(self.heads, d_heads):
            dh = timed_call(timer, h.name, "backward",
                            synced(h.backward) if timer else h.backward, d)
            ops.add_into[ops.blocks(dz.size), ops.THREADS](dz.reshape(dz.size),
                                                          dh.reshape(dh.size))
        self.encoder.backward(dz, timer)
        return float(value)

    def step(self, lr: float | None = None) -> None:
        """SGD with momentum on the device over every layer (kernels.optim.SGD's update)."""
        sgd_update([l for _, l in self.named_layers()], self._velocity,
                   self.optimizer_config, lr)

    def train_step(self, x, y: DetectionTarget, lr: float | None = None,
                   timer: LayerTimer | None = None) -> float:
        loss = self.compute_gradients(x, y, timer)
        timed_call(timer, "update", "update", synced(self.step) if timer else self.step, lr)
        return loss

    def to_host(self):
        """Copy the device parameters and gradients back into the CPU net, and return it."""
        for _, l in self.named_layers():
            l.to_host()
        return self.cpu
