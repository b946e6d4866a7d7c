"""Fully connected layer and Flatten.

FLOPs: 2 per multiply-add; the bias adds 1 FLOP per output forward and per output backward.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Layer, Shape, check_batch, check_int


class Linear(Layer):
    """y = x @ weight.T + bias, ``weight`` of shape (out_features, in_features) as in PyTorch."""

    kind = "fc"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 seed: int | None = None, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        n = type(self).__name__
        self.in_features = check_int(n, "in_features", in_features, 1)
        self.out_features = check_int(n, "out_features", out_features, 1)
        rng = rng if rng is not None else np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = rng.uniform(-bound, bound, (self.out_features, self.in_features)
                                  ).astype(np.float32)
        self.bias = rng.uniform(-bound, bound, self.out_features).astype(np.float32) \
            if bias else None
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias) if bias else None
        self._x: np.ndarray | None = None

    def describe(self) -> str:
        return f"{self.in_features}->{self.out_features}"

    def output_shape(self, input_shape: Shape) -> Shape:
        expected = f"(N>=1, {self.in_features})"
        check_batch(self, input_shape, 2, expected)
        if input_shape[1] != self.in_features:
            raise self._shape_error(expected, input_shape)
        return input_shape[0], self.out_features

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        n = input_shape[0]
        mac = n * self.in_features * self.out_features
        bias = n * self.out_features if self.bias is not None else 0
        return 2 * mac + bias, 2 * mac, 2 * mac + bias

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        self._x = x
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        if self._x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        np.dot(dy.T, self._x, out=self.grad_weight)  # in place: grads may be views of a buffer
        if self.bias is not None:
            np.sum(dy, axis=0, out=self.grad_bias)
        return dy @ self.weight if self.needs_input_grad else None


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)). No FLOPs."""

    kind = "flatten"

    def __init__(self) -> None:
        super().__init__()
        self._shape: Shape | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 2 or input_shape[0] < 1:
            raise self._shape_error("(N>=1, ...)", input_shape)
        return input_shape[0], int(np.prod(input_shape[1:]))

    def flops(self, input_shape: Shape) -> tuple[int, int, int]:
        return 0, 0, 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.output_shape(x.shape)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        return dy.reshape(self._shape)

