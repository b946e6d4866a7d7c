"""Epochs to the standard target against the global batch, for the zoo's networks, from
published training runs: what a planner charges for a large batch.

The form is the batch trade-off of :mod:`.convergence` written in epochs (McCandlish et al.
2018): E(B) = E_min (1 + B / B_crit), with B_crit playing B_noise. The parameters are fitted
here, in code, to the published points each entry lists (calibration: the entry names them);
the interval of each parameter is the range of the fits to the fastest and the slowest of the
published runs at each batch. Where a source states a batch beyond which the target is no
longer reached with that optimizer family, the entry carries it as ``max_batch`` and the
planner treats it as a constraint.

* **ResNet-50 on ImageNet, LARS** (to 75.9% top-1, MLPerf's target): MLCommons' reference
  convergence points for ResNet-50 (``mlperf_logging/rcp_checker/training_3.1.0/
  rcps_resnet.json`` in the mlcommons/logging repository; the same ten batches in the 2.1.0 to
  4.0.0 rule sets): per global batch from 1,632 to 67,840, the epochs of 10 to 28 reference runs
  with tuned LARS hyper-parameters. Fitted: E_min ~ 34.5 epochs, B_crit ~ 46,000 (the fit's
  largest residual is 3 epochs, at 4,096). Beyond 67,840 nothing is published: the planner
  says so.
* **ResNet-50 on ImageNet, SGD with momentum and the linear scaling rule with warm-up**:
  Goyal et al. 2017 ("Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", arXiv
  1706.02677, abstract): "no loss of accuracy when training with large minibatch sizes up to
  8192 images", with the same 90-epoch schedule. So the epochs do not grow with the batch up
  to 8,192 (no B_crit within it), and 8,192 is the largest batch this family is known to reach
  the target at: a constraint, not an epoch factor.

Networks without an entry (ResNet-101, VGG-16, Inception-V3, DeepLabv3, CosmoFlow) get no
factor, and the planner says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .interval import Interval

OPTIMIZERS = ("sgd", "lars")

#: MLCommons reference convergence points, ResNet-50 (rules 3.1.0): (global batch, epochs of
#: each reference run), as published in rcps_resnet.json
RESNET50_LARS_RCP = (
    (1632, (34, 34, 34, 35, 35, 37, 35, 35, 33, 35, 35, 37, 37, 35, 35, 34, 35)),
    (3264, (36, 35, 34, 34, 36, 35, 35, 35, 35, 37, 35, 35, 35, 36, 35)),
    (4096, (39, 42, 40, 41, 39, 40, 41, 39, 40, 39)),
    (8192, (42, 44, 43, 41, 41, 41, 42, 42, 43, 41)),
    (13056, (46, 46, 44, 46, 45, 46, 45, 45, 45, 46)),
    (32768, (56, 56, 55, 56, 56, 56, 56, 56, 57, 56)),
    (49152, (68, 68, 68, 68, 69, 68, 68, 67, 69, 67)),
    (58880, (80, 81, 80, 78, 80, 80, 81, 79, 80, 80)),
    (65536, (83, 85, 84, 86, 85, 85, 83, 84, 85, 85)),
    (67840, (86, 87, 86, 87, 86, 85, 86, 86, 86, 85, 86, 86, 86, 86, 86, 85, 86, 86, 87, 85,
             85, 86, 85, 87, 86, 85, 85, 86)),
)


@dataclass(frozen=True)
class EpochCurve:
    """Epochs to the target at global batch B: E_min (1 + B / b_crit) up to ``max_batch``
    (``b_crit`` None: the same epochs at every batch up to it)."""

    net: str
    optimizer: str
    target: str
    e_min: Interval
    b_crit: Interval | None
    max_batch: int | None
    source: str
    fitted_on: str

    def epochs(self, batch) -> np.ndarray:
        b = np.asarray(batch, float)
        if self.b_crit is None:
            return np.full(b.shape, self.e_min.nominal)
        return self.e_min.nominal * (1.0 + b / self.b_crit.nominal)

    def factor(self, batch) -> np.ndarray:
        """E(B) / E_min: what a batch of B costs in epochs over a small batch."""
        return self.epochs(batch) / self.e_min.nominal


def fit_epochs(batches, epochs) -> tuple[float, float]:
    """(E_min, B_crit) of E = E_min (1 + B / B_crit) by least squares (linear in B)."""
    b, e = np.asarray(batches, float), np.asarray(epochs, float)
    a, c = np.linalg.lstsq(np.vstack([np.ones_like(b), b]).T, e, rcond=None)[0]
    if not (a > 0 and c > 0):
        raise ValueError("fit_epochs: the epochs do not grow with the batch")
    return float(a), float(a / c)


def _lars_resnet50() -> EpochCurve:
    b = [p[0] for p in RESNET50_LARS_RCP]
    fits = [fit_epochs(b, [f(p[1]) for p in RESNET50_LARS_RCP]) for f in (np.mean, min, max)]
    (e, bc), lo, hi = fits
    batches = ", ".join(f"{x:,}" for x in b)
    return EpochCurve(
        "resnet50", "lars", "75.9% top-1 on ImageNet (MLPerf's target)",
        Interval(e, min(f[0] for f in fits), max(f[0] for f in fits)),
        Interval(bc, min(f[1] for f in fits), max(f[1] for f in fits)), 67840,
        "MLCommons reference convergence points for ResNet-50 (mlcommons/logging, "
        "mlperf_logging/rcp_checker/training_3.1.0/rcps_resnet.json)",
        f"the mean, fastest and slowest reference runs at global batches {batches}")


CURVES: dict[tuple[str, str], EpochCurve] = {
    ("resnet50", "lars"): _lars_resnet50(),
    ("resnet50", "sgd"): EpochCurve(
        "resnet50", "sgd", "76.3% top-1 on ImageNet in 90 epochs (Goyal et al.)",
        Interval(90.0, 90.0, 90.0), None, 8192,
        "Goyal et al. 2017, arXiv 1706.02677, abstract: 'no loss of accuracy when training "
        "with large minibatch sizes up to 8192 images'",
        "a statement, not a fit: the same epochs up to 8,192"),
}


def curve(net: str | None, optimizer: str) -> EpochCurve | None:
    """The published curve of ``net`` with ``optimizer`` (None: none published here)."""
    return CURVES.get((net or "", optimizer))
