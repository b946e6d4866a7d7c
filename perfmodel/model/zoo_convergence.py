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

* **CosmoFlow, SGD** (MLPerf HPC's target): MLCommons' reference convergence points for
  CosmoFlow (``mlperf_logging/rcp_checker/hpc_3.0.0/rcps_cosmoflow.json``): 20 to 33 runs at
  each of the global batches 32, 64, 128, 512 and 1,024, each batch with its own tuned schedule.
  Fitted on all five: E_min ~ 12 epochs, B_crit ~ 460; a rough fit (residuals up to 5 epochs,
  the largest at batch 32, whose schedule decays at epochs 4 and 6 against 16 and 32 for 64
  and 128), stated with its interval. Nothing is published past 1,024. (The HPC 1.0.0 rules'
  points belong to MLPerf HPC v1.0, which is held out, and are not used.)

* **ResNet-101 on ImageNet, SGD with the linear rule and warm-up**: Goyal et al.'s Table 2(c)
  as kakaobrain/torchgpipe quotes it (``benchmarks/resnet101-accuracy/README.md``): top-1
  error 22.08% at batch 256 and 22.36% at 8k; that repository's own 90-epoch runs give
  21.99-22.24% at 256, 1k and 4k. The same epochs up to 8,192, as for ResNet-50.

Networks without an entry (VGG-16, Inception-V3, DeepLabv3) get no factor, and the planner
says so: no published epochs-against-batch data for them were found here (Inception-V3's
published recipes use RMSProp at one batch range; DeepLabv3's only state a smallest batch).
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

#: MLCommons reference convergence points, CosmoFlow (HPC rules 3.0.0): (global batch, epochs of
#: each reference run), as published in rcps_cosmoflow.json
COSMOFLOW_SGD_RCP = (
    (32, (8, 8, 9, 8, 6, 8, 6, 6, 7, 8, 8, 8, 9, 8, 7, 8, 6, 9, 8, 8, 8, 8, 9, 8, 9, 8, 8, 8,
           8, 8, 8, 8, 8)),
    (64, (19, 18, 20, 17, 18, 19, 18, 18, 18, 18, 18, 18, 18, 19, 18, 18, 18, 18, 18, 20)),
    (128, (16, 18, 18, 18, 18, 17, 18, 18, 18, 18, 18, 18, 17, 18, 18, 18, 19, 18, 18, 18)),
    (512, (22, 23, 23, 24, 24, 21, 23, 23, 23, 23, 24, 23, 23, 21, 23, 23, 21, 23, 23, 23)),
    (1024, (42, 38, 42, 40, 40, 39, 43, 37, 39, 37, 43, 39, 38, 42, 40, 42, 42, 38, 36, 43)),
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


def from_reference_runs(net: str, optimizer: str, target: str, points, source: str
                        ) -> EpochCurve:
    """The curve fitted to reference runs ``points`` = ((global batch, (epochs of each
    run, ...)), ...): nominal on the means, the interval from fits to the fastest and the
    slowest run at each batch; nothing is claimed past the largest batch."""
    b = [p[0] for p in points]
    fits = [fit_epochs(b, [f(p[1]) for p in points]) for f in (np.mean, min, max)]
    (e, bc) = fits[0]
    batches = ", ".join(f"{x:,}" for x in b)
    return EpochCurve(net, optimizer, target,
                      Interval(e, min(f[0] for f in fits), max(f[0] for f in fits)),
                      Interval(bc, min(f[1] for f in fits), max(f[1] for f in fits)),
                      max(b), source,
                      f"the mean, fastest and slowest reference runs at global batches "
                      f"{batches}")


CURVES: dict[tuple[str, str], EpochCurve] = {
    ("resnet50", "lars"): from_reference_runs(
        "resnet50", "lars", "75.9% top-1 on ImageNet (MLPerf's target)", RESNET50_LARS_RCP,
        "MLCommons reference convergence points for ResNet-50 (mlcommons/logging, "
        "mlperf_logging/rcp_checker/training_3.1.0/rcps_resnet.json)"),
    ("cosmoflow", "sgd"): from_reference_runs(
        "cosmoflow", "sgd", "MLPerf HPC's CosmoFlow quality target",
        COSMOFLOW_SGD_RCP,
        "MLCommons reference convergence points for CosmoFlow (mlcommons/logging, "
        "mlperf_logging/rcp_checker/hpc_3.0.0/rcps_cosmoflow.json)"),
    ("resnet50", "sgd"): EpochCurve(
        "resnet50", "sgd", "76.3% top-1 on ImageNet in 90 epochs (Goyal et al.)",
        Interval(90.0, 90.0, 90.0), None, 8192,
        "Goyal et al. 2017, arXiv 1706.02677, abstract: 'no loss of accuracy when training "
        "with large minibatch sizes up to 8192 images'",
        "a statement, not a fit: the same epochs up to 8,192"),
    ("resnet101", "sgd"): EpochCurve(
        "resnet101", "sgd", "about 22% top-1 error on ImageNet in 90 epochs",
        Interval(90.0, 90.0, 90.0), None, 8192,
        "Goyal et al. 2017, Table 2(c), as kakaobrain/torchgpipe's benchmarks/resnet101-"
        "accuracy/README.md quotes it: top-1 error 22.08+-0.06% at batch 256 and 22.36+-0.09% "
        "at 8k; the repository's own 90-epoch runs (linear scaling, 4-epoch warm-up): "
        "21.99-22.24% at 256, 1k and 4k",
        "statements, not a fit: the same epochs up to 8,192, 0.3 points of error lost there"),
}


def curve(net: str | None, optimizer: str) -> EpochCurve | None:
    """The published curve of ``net`` with ``optimizer`` (None: none published here)."""
    return CURVES.get((net or "", optimizer))
