"""Updates to a target loss as a function of batch, asynchrony and momentum; time to target.

Batch (McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training",
arXiv 1812.06162, eqs. 2.11-2.12): the updates S and the samples E needed to reach a given loss
trade off as (S / S_min - 1)(E / E_min - 1) = 1, so for updates of B samples

    S(B) = S_min (1 + B_noise / B),        E(B) = S(B) B = E_min (1 + B / B_noise),

with B_noise = E_min / S_min (their critical batch). Below B_noise, doubling the batch halves
the updates; above it, doubling the batch doubles the samples (epochs) and saves few updates.
The gradient noise scale B_simple = tr(Sigma) / |G|^2 (their eq. 2.9: Sigma the per-sample
gradient covariance, G the true gradient) predicts B_noise; their appendix A.1 estimates both
terms without bias from the squared norms of gradients at two batch sizes B_small < B_big:

    |G|^2    ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr Sigma ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

and B_simple as the ratio of the two terms' averages over many steps (the ratio of single-step
estimates is biased). The harness takes B_small from each rank (or each half of a batch) and
B_big from their average (:func:`noise_terms`).

Asynchrony (Mitliagkas, Zhang, Hadjis, Re 2016, "Asynchrony begets momentum", arXiv
1605.09774): with staleness distributed geometrically with mean tau, asynchronous SGD behaves in
expectation like SGD with an implicit momentum mu_imp = tau / (1 + tau) (1 - 1/M for M workers,
tau = M - 1), and the explicit momentum should be lowered as asynchrony grows. This module
composes the two as first-order filters (an assumption of this model, not of the paper):

    1 - mu_eff = (1 - mu) (1 - mu_imp) = (1 - mu) / (1 + tau)

and charges a mis-tuned effective momentum against mu_ref, the momentum S_min and B_noise were
measured at, plus a residual cost per unit of staleness:

    S(B, tau, mu) = S_min (1 + B_noise / B) (1 + kappa tau) exp(gamma |ln((1 - mu_eff) / (1 - mu_ref))|)

Re-tuning the explicit momentum as the paper advises, mu = max(0, 1 - (1 + tau)(1 - mu_ref))
(:func:`retuned_momentum`), keeps mu_eff = mu_ref up to tau = mu_ref / (1 - mu_ref). gamma and
kappa are fitted on runs at several staleness levels (:func:`fit_async`), S_min and B_noise on
sync runs at three or more batches (:func:`fit_batch`): both are calibration, and each fit
names its runs. Time to target = S x step time / G, since G asynchronous groups make G updates
per step time (the throughput model's step time).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..ui import UserError


def noise_terms(small_sq, big_sq, b_small, b_big) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased estimates (|G|^2, tr Sigma) from the squared norms of mean gradients over
    ``b_small`` and ``b_big`` samples (McCandlish et al. 2018, appendix A.1). ``small_sq`` is
    the average of |G_small|^2 over the small batches that make up the big one."""
    small_sq, big_sq = np.asarray(small_sq, float), np.asarray(big_sq, float)
    b_small, b_big = np.asarray(b_small, float), np.asarray(b_big, float)
    if np.any(b_big <= b_small):
        raise ValueError("noise_terms: needs b_big > b_small")
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


def b_simple(grad_sq, trace) -> float:
    """B_simple = mean(tr Sigma) / mean(|G|^2) over the given steps, samples (NaN when the
    gradient term is not positive: too few steps to tell)."""
    g2 = float(np.mean(grad_sq))
    return float(np.mean(trace)) / g2 if g2 > 0 else float("nan")


def implicit_momentum(staleness) -> np.ndarray:
    """mu_imp = tau / (1 + tau) for a mean staleness tau (updates)."""
    tau = np.asarray(staleness, float)
    return tau / (1.0 + tau)


def effective_momentum(momentum, staleness) -> np.ndarray:
    """1 - (1 - mu)(1 - mu_imp): explicit and implicit momentum composed."""
    return 1.0 - (1.0 - np.asarray(momentum, float)) / (1.0 + np.asarray(staleness, float))


def retuned_momentum(reference, staleness) -> np.ndarray:
    """The explicit momentum that keeps the effective momentum at ``reference`` (0 when even no
    explicit momentum leaves too much)."""
    return np.maximum(0.0, 1.0 - (1.0 + np.asarray(staleness, float)) * (1.0 - reference))


@dataclass
class Convergence:
    """Parameters of the convergence model, each with the runs (or source) it came from.

    ``s_min``: updates to the target at an infinite batch; ``b_noise``: samples; ``gamma``:
    cost of a mis-tuned effective momentum; ``kappa``: extra updates per unit of staleness;
    ``ref_momentum``: the explicit momentum of the sync runs S_min and B_noise come from.
    ``*_se``: standard errors of the fits (0: stated, not fitted).
    """

    s_min: float
    b_noise: float
    ref_momentum: float = 0.9
    gamma: float = 0.0
    kappa: float = 0.0
    s_min_se: float = 0.0
    b_noise_se: float = 0.0
    gamma_se: float = 0.0
    kappa_se: float = 0.0
    source: dict = field(default_factory=dict)

    def updates(self, batch, staleness=0.0, momentum=None) -> np.ndarray:
        """Updates to the target for updates of ``batch`` samples with mean ``staleness`` and
        explicit ``momentum`` (default: the reference momentum)."""
        b = np.asarray(batch, float)
        mu = self.ref_momentum if momentum is None else momentum
        mu_eff = effective_momentum(mu, staleness)
        mistune = np.abs(np.log((1.0 - mu_eff) / (1.0 - self.ref_momentum)))
        return (self.s_min * (1.0 + self.b_noise / b)
                * (1.0 + self.kappa * np.asarray(staleness, float))
                * np.exp(self.gamma * mistune))

    def samples(self, batch, staleness=0.0, momentum=None) -> np.ndarray:
        """Samples to the target: updates x batch (E = E_min (1 + B / B_noise) in sync)."""
        return self.updates(batch, staleness, momentum) * np.asarray(batch, float)

    def epoch_factor(self, batch, staleness=0.0, momentum=None) -> np.ndarray:
        """Samples to the target at ``batch`` over E_min = S_min B_noise: the extra epochs a
        large batch (or asynchrony) costs; 1 at B << B_noise in sync."""
        return self.samples(batch, staleness, momentum) / (self.s_min * self.b_noise)

    def corners(self, z: float = 1.0) -> list["Convergence"]:
        """The nominal model and every corner of its fitted parameters at +-z standard errors
        (clipped at 0): the interval of a prediction is the range over them."""
        out = [self]
        names = [n for n in ("s_min", "b_noise", "gamma", "kappa") if getattr(self, n + "_se")]
        for bits in range(2 ** len(names)):
            kw = {}
            for i, n in enumerate(names):
                sign = 1 if bits >> i & 1 else -1
                kw[n] = max(getattr(self, n) + sign * z * getattr(self, n + "_se"), 0.0)
            out.append(replace(self, **kw))
        return out

    def interval(self, fn, z: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nominal, low, high) of ``fn(model)`` over :meth:`corners`."""
        vals = np.array([fn(m) for m in self.corners(z)], float)
        return vals[0], vals.min(axis=0), vals.max(axis=0)


def time_to_target_s(model: Convergence, step_time_s, groups, update_batch, staleness=None,
                     momentum=None) -> np.ndarray:
    """Updates x step time / G: G asynchronous groups make G updates per step time; staleness
    defaults to G - 1 (round-robin groups of equal speed)."""
    g = np.asarray(groups, float)
    tau = g - 1.0 if staleness is None else staleness
    return model.updates(update_batch, tau, momentum) * np.asarray(step_time_s, float) / g


def fit_batch(batch, updates, runs: list[str] | None = None, ref_momentum: float = 0.9
              ) -> Convergence:
    """S_min and B_noise from sync runs: least squares of S = S_min + E_min / B in relative
    residuals (run-to-run scatter is proportional to S), over three or more distinct batches.
    Censored runs must be left out by the caller (they bound S from below only)."""
    b, s = np.asarray(batch, float), np.asarray(updates, float)
    if len(np.unique(b)) < 3:
        raise ValueError(f"fit_batch: needs runs at 3 or more batches, got {sorted(set(b))}")
    X = np.column_stack([np.ones_like(b), 1.0 / b]) / s[:, None]
    y = np.ones_like(s)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(len(s) - 2, 1)
    cov = np.linalg.inv(X.T @ X) * float(resid @ resid) / dof
    s_min, e_min = float(coef[0]), float(coef[1])
    if s_min <= 0 or e_min <= 0:
        raise ValueError(f"fit_batch: S_min={s_min:.4g}, E_min={e_min:.4g}: the runs show no "
                         "steps/samples trade-off (need batches on both sides of B_noise)")
    b_noise = e_min / s_min
    # delta method for B_noise = E_min / S_min
    grad = np.array([-e_min / s_min**2, 1.0 / s_min])
    b_se = float(np.sqrt(max(grad @ cov @ grad, 0.0)))
    return Convergence(s_min=s_min, b_noise=b_noise, ref_momentum=ref_momentum,
                       s_min_se=float(np.sqrt(cov[0, 0])), b_noise_se=b_se,
                       source={"s_min, b_noise": list(runs or []),
                               "residual_rms": float(np.sqrt(resid @ resid / len(s)))})


def fit_async(base: Convergence, batch, staleness, momentum, updates,
              runs: list[str] | None = None) -> Convergence:
    """gamma and kappa (both >= 0) from runs at several staleness levels and momenta, with
    S_min and B_noise held at ``base``: least squares in log(S / S_sync)."""
    b, tau, mu, s = (np.asarray(v, float) for v in (batch, staleness, momentum, updates))
    sync = base.s_min * (1.0 + base.b_noise / b)
    y = np.log(s / sync)
    mistune = np.abs(np.log((1.0 - effective_momentum(mu, tau)) / (1.0 - base.ref_momentum)))
    best = None
    kappas = np.concatenate([[0.0], np.geomspace(1e-3, 3.0, 200)])
    for kappa in kappas:  # 1-D search over kappa, gamma in closed form (both >= 0)
        r = y - np.log1p(kappa * tau)
        gamma = max(float(mistune @ r) / float(mistune @ mistune), 0.0) if mistune.any() else 0.0
        sse = float(np.sum((r - gamma * mistune) ** 2))
        if best is None or sse < best[0]:
            best = (sse, gamma, kappa)
    sse, gamma, kappa = best
    dof = max(len(s) - 2, 1)
    sigma2 = sse / dof
    J = np.column_stack([mistune, tau / (1.0 + kappa * tau)])
    try:
        cov = np.linalg.inv(J.T @ J) * sigma2
        g_se, k_se = (float(np.sqrt(max(cov[i, i], 0.0))) for i in (0, 1))
    except np.linalg.LinAlgError:
        g_se = k_se = float("nan")
    src = dict(base.source)
    src["gamma, kappa"] = list(runs or [])
    src["async_residual_rms"] = float(np.sqrt(sse / len(s)))
    return replace(base, gamma=gamma, kappa=kappa, gamma_se=g_se, kappa_se=k_se, source=src)


# --- fitted on runs to a target (results rows of the harness) -------------------------------

def target_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per harness run that had a target: configuration, hyper-parameters, measured
    updates / samples / seconds to the target, whether it was censored, mean staleness."""
    tg = df[df.what == "target"]
    if tg.empty:
        return pd.DataFrame()
    hyper = df[df.what == "hyper"].pivot_table(index="run_id", columns="metric",
                                               values="value", aggfunc="first")
    stale = df[(df.what == "staleness") & (df.stat == "mean")].set_index("run_id")["value"]
    wide = tg.pivot_table(index="run_id", columns="metric", values="value", aggfunc="first")
    first = tg.groupby("run_id").first()
    out = pd.DataFrame({
        "run_id": wide.index, "strategy": first.strategy, "ranks": first.ranks,
        "param_servers": first.param_servers, "groups": first.groups,
        "workers": first.ranks - first.param_servers, "threads": first.threads,
        "batch": first.batch, "subject": first.subject, "image_size": first.image_size,
        "straggler": first.straggler, "functional": first.functional,
        "censored": first.stat == "censored", "updates": wide["updates"],
        "samples": wide["samples"], "time_s": wide["time"]})
    for m in ("update_batch", "momentum", "lr", "target_loss", "difficulty", "seed"):
        out[m] = hyper[m].reindex(out.index) if m in hyper else np.nan
    out["staleness"] = stale.reindex(out.index).fillna(0.0)
    return out.reset_index(drop=True)


def fit(calib: pd.DataFrame) -> Convergence:
    """The convergence model from calibration runs: sync (and 1-group async) runs that reached
    the target fit S_min and B_noise; runs of 2+ groups fit gamma and kappa. Censored runs are
    left out (they bound the updates from below) and named in the source."""
    if calib.empty:
        raise UserError("no calibration runs with a target in the given results")
    targets = calib.target_loss.unique()
    if len(targets) != 1:
        raise UserError(f"calibration runs at several target losses {sorted(targets)}: give "
                        "runs of one target")
    ok = calib[~calib.censored]
    sync = ok[ok.groups <= 1]
    moms = sync.momentum.unique()
    if len(moms) != 1:
        raise UserError(f"sync calibration runs at several momenta {sorted(moms)}")
    try:
        conv = fit_batch(sync.update_batch, sync.updates, list(sync.run_id),
                         ref_momentum=float(moms[0]))
    except ValueError as e:
        raise UserError(str(e)) from None
    asy = ok[ok.groups > 1]
    if len(asy) >= 2:
        conv = fit_async(conv, asy.update_batch, asy.staleness, asy.momentum, asy.updates,
                         list(asy.run_id))
    conv.source["censored (left out)"] = list(calib[calib.censored].run_id)
    conv.source["target_loss"] = float(targets[0])
    return conv
