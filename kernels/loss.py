"""Losses: softmax cross-entropy, mean squared error, and the climate net's detection loss.

A loss is called as ``loss.forward(prediction, target) -> float`` and ``loss.backward()`` returns
the gradient with respect to the prediction(s). Losses act on small tensors (logits, a 12x12
detection grid) and are vectorized numpy; their FLOPs are counted but are a rounding error of a
training step.

FLOPs, counted per element: softmax = 4 per logit (max, subtract, exp, divide) + the log of the
target; cross-entropy backward = 2 per logit; squared error = 3 per element forward (subtract,
multiply, add) and 2 backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ShapeError


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


class CrossEntropyLoss:
    """Softmax over classes + negative log-likelihood, averaged over the batch.

    ``prediction``: logits (N, K); ``target``: integer classes (N,) in 0..K-1.
    """

    kind = "softmax_xent"

    def __init__(self) -> None:
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def flops(self, pred_shape: tuple[int, ...]) -> tuple[int, int]:
        n, k = pred_shape
        return 4 * n * k + n, 2 * n * k

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        if logits.ndim != 2 or logits.shape[0] < 1:
            raise ShapeError(f"CrossEntropyLoss: expected logits (N>=1, K), got {logits.shape}")
        target = np.asarray(target)
        if target.shape != (logits.shape[0],):
            raise ShapeError(f"CrossEntropyLoss: expected target ({logits.shape[0]},), "
                             f"got {target.shape}")
        if target.min() < 0 or target.max() >= logits.shape[1]:
            raise ValueError(f"CrossEntropyLoss: target classes must lie in 0..{logits.shape[1]-1}")
        logp = _log_softmax(logits, 1)
        self._cache = (logp, target.astype(np.int64))
        return float(-logp[np.arange(len(target)), target].mean())

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("CrossEntropyLoss: backward called before forward")
        logp, target = self._cache
        g = np.exp(logp)
        g[np.arange(len(target)), target] -= 1.0
        return (g / len(target)).astype(logp.dtype)


class MSELoss:
    """Mean of squared differences over all elements (the autoencoder's reconstruction loss)."""

    kind = "mse"

    def __init__(self) -> None:
        self._diff: np.ndarray | None = None

    def flops(self, pred_shape: tuple[int, ...]) -> tuple[int, int]:
        size = int(np.prod(pred_shape))
        return 3 * size, 2 * size

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        if prediction.shape != target.shape:
            raise ShapeError(f"MSELoss: prediction {prediction.shape} and target "
                             f"{target.shape} differ")
        self._diff = prediction - target.astype(prediction.dtype)
        return float(np.mean(self._diff.astype(np.float64) ** 2))

    def backward(self) -> np.ndarray:
        if self._diff is None:
            raise RuntimeError("MSELoss: backward called before forward")
        return (2.0 / self._diff.size) * self._diff


@dataclass
class DetectionTarget:
    """Ground truth on the detection grid (G_h x G_w cells) for a batch of N images.

    ``obj``: (N, Gh, Gw) 1 where a box centre falls in the cell, else 0. ``cls``: (N, Gh, Gw)
    class 0..K-1 of that box (ignored elsewhere). ``box``: (N, 4, Gh, Gw) target coordinates
    (x, y offsets in the cell, log width and height relative to the cell). ``labelled``: (N,)
    bool: unlabelled images (semi-supervised) contribute no detection loss.
    """

    obj: np.ndarray
    cls: np.ndarray
    box: np.ndarray
    labelled: np.ndarray


class DetectionLoss:
    """YOLO-style detection loss of Racah et al. 2017 (ExtremeWeather), on three heads:
    box confidence (N, 2, Gh, Gw), class (N, K, Gh, Gw) and coordinates (N, 4, Gh, Gw).

    loss = (1/N_labelled) * sum over labelled images of
        sum_cells w_cell * CE(confidence, obj)            (w = 1 on object cells, lambda_noobj else)
      + sum_object_cells CE(class, cls)
      + lambda_coord * sum_object_cells ||coords - box||^2

    Cross-entropy replaces YOLO's squared error on confidence and class because the published
    heads have 2 and K softmax channels. The weights default to YOLO's (Redmon et al. 2016):
    lambda_coord = 5, lambda_noobj = 0.5.
    """

    kind = "detection"

    def __init__(self, lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> None:
        self.lambda_coord = float(lambda_coord)
        self.lambda_noobj = float(lambda_noobj)
        self._cache: tuple | None = None

    def flops(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[int, int]:
        conf, cls, box = (int(np.prod(s)) for s in shapes)
        return 4 * (conf + cls) + 3 * box, 2 * (conf + cls + box)

    def forward(self, preds: tuple[np.ndarray, np.ndarray, np.ndarray],
                target: DetectionTarget) -> float:
        conf, cls, box = preds
        n, _, gh, gw = conf.shape
        for name, arr, c in (("confidence", conf, 2), ("coordinates", box, 4)):
            if arr.shape != (n, c, gh, gw):
                raise ShapeError(f"DetectionLoss: expected {name} {(n, c, gh, gw)}, "
                                 f"got {arr.shape}")
        if cls.shape[0] != n or cls.shape[2:] != (gh, gw):
            raise ShapeError(f"DetectionLoss: expected class (N={n}, K, {gh}, {gw}), "
                             f"got {cls.shape}")
        if target.obj.shape != (n, gh, gw) or target.box.shape != box.shape:
            raise ShapeError(f"DetectionLoss: target grid {target.obj.shape} / "
                             f"{target.box.shape} does not match predictions {(n, gh, gw)}")
        lab = np.asarray(target.labelled, dtype=bool).reshape(n, 1, 1)
        obj = (target.obj > 0) & lab
        noobj = (target.obj <= 0) & lab
        n_lab = max(int(lab.sum()), 1)
        w_conf = (obj + self.lambda_noobj * noobj).astype(conf.dtype)       # (n, gh, gw)
        logp_conf = _log_softmax(conf, 1)
        logp_cls = _log_softmax(cls, 1)
        obj_i = obj.astype(np.int64)
        ce_conf = -np.take_along_axis(logp_conf, obj_i[:, None], 1)[:, 0]
        cls_t = np.clip(target.cls.astype(np.int64), 0, cls.shape[1] - 1)
        ce_cls = -np.take_along_axis(logp_cls, cls_t[:, None], 1)[:, 0]
        diff = (box - target.box.astype(box.dtype)) * obj[:, None]
        loss = ((w_conf * ce_conf).sum() + (ce_cls * obj).sum()
                + self.lambda_coord * (diff.astype(np.float64) ** 2).sum()) / n_lab
        self._cache = (logp_conf, logp_cls, obj_i, cls_t, w_conf, obj, diff, n_lab)
        return float(loss)

    def backward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._cache is None:
            raise RuntimeError("DetectionLoss: backward called before forward")
        logp_conf, logp_cls, obj_i, cls_t, w_conf, obj, diff, n_lab = self._cache
        d_conf = np.exp(logp_conf)
        np.put_along_axis(d_conf, obj_i[:, None],
                          np.take_along_axis(d_conf, obj_i[:, None], 1) - 1.0, 1)
        d_conf *= w_conf[:, None] / n_lab
        d_cls = np.exp(logp_cls)
        np.put_along_axis(d_cls, cls_t[:, None],
                          np.take_along_axis(d_cls, cls_t[:, None], 1) - 1.0, 1)
        d_cls *= obj[:, None].astype(d_cls.dtype) / n_lab
        d_box = (2.0 * self.lambda_coord / n_lab) * diff
        dt = logp_conf.dtype
        return d_conf.astype(dt), d_cls.astype(dt), d_box.astype(dt)
