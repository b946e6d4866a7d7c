"""SGD with momentum and weight decay, PyTorch semantics.

    g = grad_scale * grad + weight_decay * w;  v = momentum * v + g;  w -= lr * v

FLOPs per parameter: 2 (decay) + 2 (momentum) + 2 (update) = 6; counted by the node measurement
under the "update" row.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def sgd_update(w, g, v, lr, momentum, wd, gscale):  # pragma: no cover - JIT
    for i in prange(w.size):
        gi = gscale * g[i] + wd * w[i]
        vi = momentum * v[i] + gi
        v[i] = vi
        w[i] -= lr * vi


class SGD:
    """Updates (owner, attribute, gradient-attribute) parameter slots in place."""

    FLOP_PER_PARAM = 6

    def __init__(self, layers: Iterable, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        for name, v, lo in (("lr", lr, 0.0), ("momentum", momentum, 0.0),
                            ("weight_decay", weight_decay, 0.0)):
            if not float(v) >= lo:
                raise ValueError(f"SGD: {name}={v} is out of range (allowed >= {lo})")
        self.layers = list(layers)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self._velocity: dict[tuple[int, str], np.ndarray] = {}

    def step(self, lr: float | None = None, grad_scale: float = 1.0) -> None:
        """Apply one update with ``lr`` (or the constructor's) to ``grad_scale`` x the
        gradients (1/N turns an allreduced sum into the mean, with no extra pass)."""
        lr = self.lr if lr is None else float(lr)
        for li, layer in enumerate(self.layers):
            for pname, w, _ in layer.params():
                g = getattr(layer, "grad_" + pname)
                key = (li, pname)
                v = self._velocity.get(key)
                if v is None or v.shape != w.shape or v.dtype != w.dtype:
                    v = self._velocity[key] = np.zeros_like(w)
                dt = w.dtype.type
                sgd_update(w.reshape(-1), np.ascontiguousarray(g, dtype=w.dtype).reshape(-1),
                     v.reshape(-1), dt(lr), dt(self.momentum), dt(self.weight_decay),
                     dt(grad_scale))
