"""Nets: a common base (parameters, ledger, optimizer, per-layer timing) and ``Sequential``.

Per-layer timing: pass a :class:`LayerTimer` to ``forward``/``backward``/``train_step`` and every
layer's forward and backward wall time (seconds) is recorded under its ledger name. Without a
timer nothing is timed and nothing is slower.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from .activation import ReLU
from .base import Layer, LayerCost, Ledger, Shape, ShapeError
from .loss import CrossEntropyLoss
from .optim import SGD
from .pool import MaxPool2d


class LayerTimer:
    """Accumulates wall time in seconds per (layer name, phase); phases: forward, backward,
    loss, update."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)

    def time(self, name: str, phase: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds[(name, phase)] += time.perf_counter() - t0
        return out

    def reset(self) -> None:
        self.seconds.clear()


def timed_call(timer: LayerTimer | None, name: str, phase: str, fn, *args):
    return fn(*args) if timer is None else timer.time(name, phase, fn, *args)


class Net:
    """What every net offers: named layers, parameters, a ledger and an SGD optimizer."""

    input_shape: Shape  # (C, H, W) of one sample

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0
                 ) -> None:
        self.optimizer_config = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        self._optimizer: SGD | None = None

    # subclasses provide these two
    def named_layers(self) -> list[tuple[str, Layer]]:
        raise NotImplementedError

    def fused_layers(self) -> dict[str, str]:
        """Layer name -> the name of the layer that does its work, for layers a net fused
        into another (see ``Sequential``'s ``fuse``)."""
        return {n: f for n, l in self.named_layers() if (f := getattr(l, "fused_into", None))}

    def loss_costs(self, batch: int) -> list[LayerCost]:
        raise NotImplementedError

    @property
    def optimizer(self) -> SGD:
        if self._optimizer is None:
            self._optimizer = SGD([l for _, l in self.named_layers()], **self.optimizer_config)
        return self._optimizer

    def param_count(self) -> int:
        return sum(l.param_count() for _, l in self.named_layers())

    def train(self) -> "Net":
        for _, l in self.named_layers():
            l.training = True
        return self

    def eval(self) -> "Net":
        for _, l in self.named_layers():
            l.training = False
        return self

    def to_dtype(self, dtype: type) -> "Net":
        for _, l in self.named_layers():
            l.to_dtype(dtype)
        self._optimizer = None
        return self

    def state(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, keyed ``layer.weight`` / ``layer.bias``."""
        return {f"{n}.{p}": w.copy() for n, l in self.named_layers() for p, w, _ in l.params()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for n, l in self.named_layers():
            for p, w, _ in l.params():
                w[...] = state[f"{n}.{p}"]

    def compute_gradients(self, x: np.ndarray, y: Any, timer: LayerTimer | None = None
                          ) -> float:
        """Forward, loss and backward: fills every layer's gradients, returns the loss."""
        raise NotImplementedError

    def train_step(self, x: np.ndarray, y: Any, lr: float | None = None,
                   timer: LayerTimer | None = None) -> float:
        """Forward, loss, backward and the SGD update; returns the loss."""
        loss = self.compute_gradients(x, y, timer)
        timed_call(timer, "update", "update", self.optimizer.step, lr)
        return loss

    def ledger(self, batch: int) -> Ledger:
        """Per-layer FLOP and parameter counts for a batch of ``batch`` samples."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch={batch!r} is out of range (allowed >= 1)")
        rows = self._layer_costs((batch, *self.input_shape))
        rows += self.loss_costs(batch)
        params = sum(r.params for r in rows)
        return Ledger(batch=batch, rows=rows, update_flop=SGD.FLOP_PER_PARAM * params)

    def _layer_costs(self, shape: Shape) -> list[LayerCost]:
        raise NotImplementedError

    def _check_batch(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 1 \
                or tuple(x.shape[1:]) != tuple(self.input_shape):
            shape = getattr(x, "shape", type(x).__name__)
            raise ShapeError(f"{type(self).__name__}: expected input (N>=1, "
                             f"{', '.join(map(str, self.input_shape))}), got {shape}")


class Sequential(Net):
    """Layers applied in order, then a loss (softmax cross-entropy by default).

    ``forward(x)`` returns the last layer's output; ``backward(dy)`` returns the input gradient
    (None: the first layer skips it, as training needs no gradient of the data);
    ``train_step(x, y, lr=...)`` runs forward, loss, backward and the SGD update and returns
    the loss.

    ``fuse=True`` (the default): a ReLU followed by a max-pool is done by the pool
    (``MaxPool2d.relu_input``), one pass over the larger tensor each way instead of two, with
    the same values and gradients. The ReLU keeps its name and ledger row, its ``fused_into``
    names the pool, and a measurement charges its FLOPs and time to the pool (HEP at
    224x224, batch 8: relu1 took 10 ms forward and 11 ms backward on its own). (A dropout
    after the pool, fused the same way, was no faster here: hashing its mask inside the
    pooling loop cost what the separate pass saved.)
    """

    def __init__(self, *layers: Layer, input_shape: Shape | None = None, loss: Any = None,
                 names: Iterable[str] | None = None, first_needs_grad: bool = False,
                 fuse: bool = True, **optim: float) -> None:
        super().__init__(**optim)
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        self.layers = list(layers)
        self.names = list(names) if names is not None else _auto_names(self.layers)
        for n, l in zip(self.names, self.layers):
            l.name = n
        self.layers[0].needs_input_grad = first_needs_grad
        self.input_shape = tuple(input_shape) if input_shape is not None else ()
        self.loss = loss if loss is not None else CrossEntropyLoss()
        if fuse:
            for (n, a), (m, b) in zip(self.named_layers(), self.named_layers()[1:]):
                if type(a) is ReLU and isinstance(b, MaxPool2d):
                    a.fused_into, b.relu_input = m, True

    def named_layers(self) -> list[tuple[str, Layer]]:
        return list(zip(self.names, self.layers))

    def _layer_costs(self, shape: Shape) -> list[LayerCost]:
        rows = []
        for l in self.layers:
            rows.append(l.cost(shape))
            shape = rows[-1].output_shape
        return rows

    def output_shape(self, input_shape: Shape) -> Shape:
        for l in self.layers:
            input_shape = l.output_shape(input_shape)
        return input_shape

    def loss_costs(self, batch: int) -> list[LayerCost]:
        out = self.output_shape((batch, *self.input_shape))
        f, b = self.loss.flops(out)
        return [LayerCost("loss", self.loss.kind, out, (1,), 0, f, b, 0)]

    def forward(self, x: np.ndarray, timer: LayerTimer | None = None) -> np.ndarray:
        if self.input_shape:
            self._check_batch(x)
        for n, l in zip(self.names, self.layers):
            x = timed_call(timer, n, "forward", l.forward, x)
        return x

    def backward(self, dy: np.ndarray, timer: LayerTimer | None = None) -> np.ndarray | None:
        for n, l in zip(reversed(self.names), reversed(self.layers)):
            dy = timed_call(timer, n, "backward", l.backward, dy)
        return dy

    def compute_gradients(self, x: np.ndarray, y: Any, timer: LayerTimer | None = None
                          ) -> float:
        out = self.forward(x, timer)
        loss = timed_call(timer, "loss", "forward", self.loss.forward, out, y)
        dy = timed_call(timer, "loss", "backward", self.loss.backward)
        self.backward(dy, timer)
        return loss

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({n}): {l!r}" for n, l in self.named_layers())
        return f"Sequential(\n{inner}\n)"


def _auto_names(layers: list[Layer]) -> list[str]:
    """conv1, relu1, pool1, ... numbered per kind, as the paper's figures name layers."""
    counts: dict[str, int] = defaultdict(int)
    names = []
    for l in layers:
        counts[l.kind] += 1
        names.append(f"{l.kind}{counts[l.kind]}")
    return names
