"""Layer base class, shape errors and the FLOP ledger entry.

FLOP convention (project-wide): one multiply-add is **2 FLOP**; a compare, an add, a multiply
or a max is 1 FLOP. Every layer reports three counts for a batch:

* ``forward_flop``      -- computing the output;
* ``backward_data_flop`` -- computing the gradient with respect to the layer input;
* ``backward_weight_flop`` -- computing the gradients of the parameters (weights and bias).

Padding policy: convolutions count every kernel tap, *including taps that fall on padded zeros*,
as the im2col/GEMM kernels of Caffe, Intel Caffe and this project execute them. This is also the
count that gives the published 5.26 GFLOP per HEP image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An input whose shape does not fit a layer. The message names the layer and both shapes."""


@dataclass(frozen=True)
class LayerCost:
    """One ledger row: what a layer costs for one batch. FLOP counts in FLOP (not FLOP/s)."""

    name: str
    kind: str
    input_shape: Shape
    output_shape: Shape
    params: int
    forward_flop: int
    backward_data_flop: int
    backward_weight_flop: int

    @property
    def backward_flop(self) -> int:
        return self.backward_data_flop + self.backward_weight_flop

    @property
    def train_flop(self) -> int:
        """Forward plus both backward passes, FLOP per batch."""
        return self.forward_flop + self.backward_flop

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        d["train_flop"] = self.train_flop
        return d


@dataclass
class Ledger:
    """The per-layer FLOP and parameter ledger of a net at one batch size.

    The node measurement, the analytic model and the report all read this one object.
    """

    batch: int
    rows: list[LayerCost] = field(default_factory=list)
    update_flop: int = 0  # the optimizer's FLOP per step (SGD: 6 per parameter)

    def __iter__(self) -> Iterator[LayerCost]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def param_bytes(self) -> int:
        """Parameter storage in bytes (float32)."""
        return 4 * self.params

    @property
    def forward_flop(self) -> int:
        return sum(r.forward_flop for r in self.rows)

    @property
    def backward_flop(self) -> int:
        return sum(r.backward_flop for r in self.rows)

    @property
    def train_flop(self) -> int:
        """FLOP of one training step (forward + backward) for the whole batch."""
        return sum(r.train_flop for r in self.rows)

    @property
    def train_flop_per_sample(self) -> float:
        return self.train_flop / self.batch

    @property
    def step_flop(self) -> int:
        """FLOP of a whole training step: forward, backward and the parameter update."""
        return self.train_flop + self.update_flop

    def row(self, name: str) -> LayerCost:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_dicts(self) -> list[dict]:
        return [r.as_dict() for r in self.rows]


class Layer:
    """Base of every layer: ``forward(x) -> y``, ``backward(dy) -> dx``.

    ``backward`` fills ``grad_weight`` / ``grad_bias`` of layers that have parameters, *in
    place*: the arrays may be views into one flat buffer that an allreduce reduces directly. A layer
    whose ``needs_input_grad`` is False (the first layer of a net) skips the data gradient and
    returns None; the ledger then counts its backward-data FLOP as zero, as frameworks do.
    """

    kind: str = "layer"
    training: bool = True

    def __init__(self) -> None:
        self.name: str = type(self).__name__
        self.needs_input_grad: bool = True
        #: the name of the layer that does this layer's work, when a net fused the two (see
        #: ``Sequential``); this layer's own forward and backward then pass data through
        self.fused_into: str | None = None

    # --- shapes and costs -------------------------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        """Output shape for an input of ``input_shape`` (batch first). Raises ShapeError."""
        raise NotImplementedError

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        """(forward, backward-data, backward-weight) FLOP for one batch of ``input_shape``."""
        raise NotImplementedError

    def cost(self, input_shape: Shape) -> LayerCost:
        out = self.output_shape(input_shape)
        f, bd, bw = self.flops(input_shape)
        if not self.needs_input_grad:
            bd = 0
        return LayerCost(self.name, self.kind, tuple(input_shape), tuple(out),
                         self.param_count(), int(f), int(bd), int(bw))

    # --- parameters ------------------------------------------------------------------
    def params(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, value, gradient) triples; empty for layers without parameters."""
        out = []
        for p in ("weight", "bias"):
            w = getattr(self, p, None)
            if w is not None:
                out.append((p, w, getattr(self, "grad_" + p)))
        return out

    def param_count(self) -> int:
        return sum(int(w.size) for _, w, _ in self.params())

    def to_dtype(self, dtype: type) -> "Layer":
        """Cast parameters and gradients (float64 is for gradient checks in tests)."""
        for p in ("weight", "bias"):
            w = getattr(self, p, None)
            if w is not None:
                setattr(self, p, w.astype(dtype))
                setattr(self, "grad_" + p, np.zeros_like(getattr(self, p)))
        return self

    # --- compute ---------------------------------------------------------------------
    def _scratch(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous array of ``shape`` carved from a flat buffer the layer keeps between
        calls under ``key`` and grows as needed. Fresh arrays above glibc's mmap threshold are
        mapped anew and faulted in on every call (a loop of HEP conv5's passes took 20.3 ms
        with fresh arrays, 15.8 with kept ones); see ``Conv2d``'s ``reuse_output``."""
        work = self.__dict__.setdefault("_workspace", {})
        size = math.prod(shape)
        buf = work.get(key)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = work[key] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _check_input(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name}: expected a numpy array, got {type(x).__name__}")
        self.output_shape(x.shape)

    def _shape_error(self, expected: str, given: Shape) -> ShapeError:
        return ShapeError(f"{self.name} ({self.describe()}): expected input {expected}, "
                          f"got {tuple(given)}")

    def describe(self) -> str:
        return self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def check_int(layer: str, field_name: str, value: object, lo: int, hi: int | None = None) -> int:
    """Validate an integer constructor argument; the error names layer, field, value and range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{layer}: {field_name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{layer}: {field_name}={value} is out of range (allowed {allowed})")
    return int(value)


def pair(layer: str, field_name: str, value: object, lo: int, hi: int | None = None
         ) -> tuple[int, int]:
    """Accept an int or a pair of ints, as PyTorch does for kernel_size, stride and padding."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{layer}: {field_name} must be an int or a pair, got {value!r}")
        return (check_int(layer, field_name, value[0], lo, hi),
                check_int(layer, field_name, value[1], lo, hi))
    v = check_int(layer, field_name, value, lo, hi)
    return v, v


def check_batch(layer: "Layer", shape: Shape, ndim: int, expected: str) -> None:
    if len(shape) != ndim or shape[0] < 1:
        raise layer._shape_error(expected, shape)
