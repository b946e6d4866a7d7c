"""Harness configuration: arguments, validation (before any rank works) and rank layout."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np

from ..ui import UserError

STRATEGIES = ("sync", "async", "hybrid")
STRAGGLERS = ("constant", "exponential", "uniform")


@dataclass
class Straggler:
    """Extra delay per step and worker, in seconds: ``constant:D``, ``exponential:MEAN`` or
    ``uniform:LO:HI``; '' for none."""

    kind: str = ""
    args: tuple[float, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "Straggler":
        if not text:
            return cls()
        parts = text.split(":")
        kind, nums = parts[0], parts[1:]
        need = {"constant": 1, "exponential": 1, "uniform": 2}
        if kind not in need:
            raise UserError(f"--straggler={text!r}: unknown distribution {kind!r} (allowed: "
                            f"{', '.join(STRAGGLERS)}, e.g. exponential:0.05)")
        try:
            vals = tuple(float(v) for v in nums)
        except ValueError:
            raise UserError(f"--straggler={text!r}: parameters must be numbers") from None
        if len(vals) != need[kind] or any(v < 0 for v in vals):
            raise UserError(f"--straggler={text!r}: {kind} takes {need[kind]} non-negative "
                            "number(s) of seconds")
        if kind == "uniform" and vals[0] > vals[1]:
            raise UserError(f"--straggler={text!r}: uniform needs LO <= HI")
        return cls(kind, vals)

    def quantile(self, q) -> np.ndarray:
        """The delay (s) at cumulative probability ``q`` (0 <= q < 1)."""
        q = np.asarray(q, float)
        if not self.kind:
            return np.zeros_like(q)
        if self.kind == "constant":
            return np.full_like(q, self.args[0])
        if self.kind == "exponential":
            return -self.args[0] * np.log1p(-q)
        return self.args[0] + (self.args[1] - self.args[0]) * q

    def draws(self, n: int, rng) -> np.ndarray:
        """``n`` delays (s) for one rank's steps, by stratified sampling: one draw from each of
        n equal-probability strata (the quantile at (i + u) / n, u uniform), in random order.
        The delays are still random in sequence and independent between ranks, but their
        empirical distribution is the law's: the mean of a 30-step run's delays is within a
        percent of the stated mean, where 30 independent exponential draws scatter by 18%
        (and a model given the stated law was judged against whatever the draws were)."""
        q = (np.arange(n) + rng.uniform(size=n)) / max(n, 1)
        return rng.permutation(self.quantile(np.minimum(q, 1 - 1e-12)))

    def __str__(self) -> str:
        return f"{self.kind}:{':'.join(f'{v:g}' for v in self.args)}" if self.kind else ""


@dataclass
class HarnessConfig:
    strategy: str
    net: str
    image_size: int
    data: str
    batch: int                      # local batch per worker
    steps: int                      # timed steps per worker
    warmup: int = 2
    groups: int = 1
    param_servers: int = 0
    allreduce: str = "fused"        # fused: one buffer; per-blob: one Allreduce per blob
    group_reduce: str = "reduce-bcast"   # hybrid: reduce+bcast (Intel Caffe) or allreduce
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.5             # HEP: the published net's dropout (0 for exact tests)
    straggler: Straggler = field(default_factory=Straggler)
    threads: int = 1
    seed: int = 0
    output: str = ""
    save_weights: str = ""
    watchdog_s: float = 300.0
    functional: bool = False
    label: str = ""
    filters: int = 128              # HEP conv width (scaled variants for small machines)
    shuffle: bool = True            # False: every rank reads its shard in file order
    inject_fault: str = ""          # for fault tests: raise|kill|hang:RANK:STEP
    eval_every: int = 0             # steps between held-out evaluations (0: none)
    eval_samples: int = 256         # held-out events per evaluation (from DATA/val.h5)
    smooth: float = 0.5             # EMA weight of the newest evaluation in the smoothed loss
    target_loss: float = 0.0        # stop when the smoothed held-out loss reaches it (0: off)
    max_steps: int = 0              # cap on timed steps with a target (0: --steps)
    lr_warmup: int = 0              # steps of linear learning-rate warm-up (0: none)
    noise_scale: bool = False       # estimate the gradient noise scale B_simple
    trace_every: int = 1            # per-iteration rows for every N-th step (1: all)

    @property
    def step_cap(self) -> int:
        """Timed steps a run may take: --max-steps with a target, else --steps."""
        return self.max_steps if self.target_loss > 0 and self.max_steps > 0 else self.steps

    def lr_at(self, update: int) -> float:
        """Learning rate of the ``update``-th update (0-based): linear warm-up, then flat."""
        if self.lr_warmup > 0 and update < self.lr_warmup:
            return self.lr * (update + 1) / self.lr_warmup
        return self.lr

    def workers(self, size: int) -> int:
        return size - self.param_servers


def validate(cfg: HarnessConfig, ranks: int, cores: int | None = None) -> None:
    """Raise UserError for a configuration that cannot run on ``ranks`` ranks."""
    if cfg.strategy not in STRATEGIES:
        raise UserError(f"strategy={cfg.strategy!r} is not known (allowed: "
                        f"{', '.join(STRATEGIES)})")
    if ranks < 1:
        raise UserError(f"ranks={ranks} is out of range (allowed >= 1)")
    if cfg.param_servers < 0 or cfg.param_servers >= ranks:
        raise UserError(f"param_servers={cfg.param_servers} must be at least 0 and fewer than "
                        f"the {ranks} ranks")
    workers = ranks - cfg.param_servers
    if cfg.strategy == "sync" and cfg.param_servers:
        raise UserError("strategy 'sync' uses no parameter servers (param_servers must be 0)")
    if cfg.strategy in ("async", "hybrid") and cfg.param_servers < 1:
        raise UserError(f"strategy {cfg.strategy!r} needs param_servers >= 1")
    groups = workers if cfg.strategy == "async" else cfg.groups
    if cfg.strategy == "sync" and cfg.groups != 1:
        raise UserError(f"strategy 'sync' has one group (groups={cfg.groups} given)")
    if groups < 1 or groups > workers:
        raise UserError(f"groups={groups} must lie in 1..{workers} (the workers)")
    if workers % groups:
        raise UserError(f"groups={groups} does not divide the {workers} workers evenly")
    for name, v in (("batch", cfg.batch), ("steps", cfg.steps), ("image_size", cfg.image_size),
                    ("threads", cfg.threads)):
        if v < 1:
            raise UserError(f"{name}={v} is out of range (allowed >= 1)")
    if cfg.warmup < 0:
        raise UserError(f"warmup={cfg.warmup} is out of range (allowed >= 0)")
    if cfg.allreduce not in ("fused", "per-blob"):
        raise UserError(f"allreduce={cfg.allreduce!r} is not known (allowed: fused, per-blob)")
    if cfg.filters < 1:
        raise UserError(f"filters={cfg.filters} is out of range (allowed >= 1)")
    if cfg.inject_fault:
        parts = cfg.inject_fault.split(":")
        if len(parts) != 3 or parts[0] not in ("raise", "kill", "hang") \
                or not all(x.isdigit() for x in parts[1:]):
            raise UserError(f"inject_fault={cfg.inject_fault!r}: expected "
                            "raise|kill|hang:RANK:STEP")
    for name in ("eval_samples", "trace_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"{name}={getattr(cfg, name)} is out of range (allowed >= 1)")
    for name in ("eval_every", "max_steps", "lr_warmup"):
        if getattr(cfg, name) < 0:
            raise UserError(f"{name}={getattr(cfg, name)} is out of range (allowed >= 0)")
    if not 0 < cfg.smooth <= 1:
        raise UserError(f"smooth={cfg.smooth} is out of range (allowed 0 < smooth <= 1)")
    if cfg.target_loss < 0:
        raise UserError(f"target_loss={cfg.target_loss} is out of range (allowed > 0)")
    if cfg.target_loss > 0 and cfg.eval_every < 1:
        raise UserError("target_loss needs eval_every >= 1 (the held-out loss decides)")
    if not 0 <= cfg.momentum < 1:
        raise UserError(f"momentum={cfg.momentum} is out of range (allowed 0 <= m < 1)")
    if cfg.noise_scale and cfg.batch < 2 and workers // groups < 2:
        raise UserError("noise_scale needs batch >= 2 (two sub-batches) or groups of >= 2 "
                        "workers")
    if cfg.group_reduce not in ("reduce-bcast", "allreduce"):
        raise UserError(f"group_reduce={cfg.group_reduce!r} is not known (allowed: "
                        "reduce-bcast, allreduce)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", default="sync", help="sync, async or hybrid")
    p.add_argument("--net", default="hep", help="hep or climate")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--data", required=True, help="folder of HDF5 shards (perfmodel data)")
    p.add_argument("--batch", type=int, default=8, help="local batch per worker")
    p.add_argument("--steps", type=int, default=20, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--param-servers", type=int, default=0)
    p.add_argument("--allreduce", default="fused")
    p.add_argument("--group-reduce", default="reduce-bcast")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.5, help="HEP dropout (default 0.5)")
    p.add_argument("--straggler", default="")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="")
    p.add_argument("--save-weights", default="")
    p.add_argument("--watchdog-s", type=float, default=300.0)
    p.add_argument("--functional", action="store_true")
    p.add_argument("--label", default="")
    p.add_argument("--filters", type=int, default=128, help="HEP conv width")
    p.add_argument("--no-shuffle", action="store_true", help="read shards in file order")
    p.add_argument("--inject-fault", default="", help="tests only: raise|kill|hang:RANK:STEP")
    add_convergence_arguments(p)


def add_convergence_arguments(p: argparse.ArgumentParser) -> None:
    """Evaluation, target, noise-scale and trace options: the harness's, which ``perfmodel
    scale`` passes on to every run."""
    p.add_argument("--eval-every", type=int, default=0, help="steps between held-out "
                   "evaluations on DATA/val.h5 (default 0: none)")
    p.add_argument("--eval-samples", type=int, default=256, help="held-out events per "
                   "evaluation (default 256)")
    p.add_argument("--smooth", type=float, default=0.5, help="EMA weight of the newest "
                   "evaluation in the smoothed held-out loss (default 0.5)")
    p.add_argument("--target-loss", type=float, default=0.0, help="stop when the smoothed "
                   "held-out loss reaches this (needs --eval-every)")
    p.add_argument("--max-steps", type=int, default=0, help="with --target-loss: cap on "
                   "timed steps; a run that hits it is recorded as censored (default --steps)")
    p.add_argument("--lr-warmup", type=int, default=0, help="steps of linear learning-rate "
                   "warm-up (default 0)")
    p.add_argument("--noise-scale", action="store_true", help="estimate the gradient noise "
                   "scale B_simple (McCandlish et al. 2018) every step")
    p.add_argument("--trace-every", type=int, default=1, help="per-iteration rows for every "
                   "N-th step (default 1: all; long runs stay small with 10)")



def from_args(a: argparse.Namespace) -> HarnessConfig:
    return HarnessConfig(
        strategy=a.strategy, net=a.net, image_size=a.image_size, data=a.data, batch=a.batch,
        steps=a.steps, warmup=a.warmup, groups=a.groups, param_servers=a.param_servers,
        allreduce=a.allreduce, group_reduce=a.group_reduce, lr=a.lr, momentum=a.momentum,
        weight_decay=a.weight_decay, dropout=a.dropout,
        straggler=Straggler.parse(a.straggler), threads=a.threads, seed=a.seed,
        output=a.output, save_weights=a.save_weights, watchdog_s=a.watchdog_s,
        functional=a.functional, label=a.label, filters=a.filters, shuffle=not a.no_shuffle,
        inject_fault=a.inject_fault, eval_every=a.eval_every, eval_samples=a.eval_samples,
        smooth=a.smooth, target_loss=a.target_loss, max_steps=a.max_steps,
        lr_warmup=a.lr_warmup, noise_scale=a.noise_scale, trace_every=a.trace_every)


def to_argv(cfg: HarnessConfig) -> list[str]:
    """The harness command-line arguments that reproduce ``cfg``."""
    out = []
    for name in ("strategy", "net", "image_size", "data", "batch", "steps", "warmup", "groups",
                 "param_servers", "allreduce", "group_reduce", "lr", "momentum",
                 "weight_decay", "dropout", "threads", "seed", "output", "save_weights",
                 "watchdog_s", "label", "filters", "inject_fault", "eval_every", "eval_samples",
                 "smooth", "target_loss", "max_steps", "lr_warmup", "trace_every"):
        v = getattr(cfg, name)
        if v == "" and name in ("output", "save_weights", "label", "inject_fault"):
            continue
        if name in ("eval_every", "target_loss", "max_steps", "lr_warmup") and not v:
            continue
        out += [f"--{name.replace('_', '-')}", str(v)]
    if cfg.straggler.kind:
        out += ["--straggler", str(cfg.straggler)]
    if cfg.functional:
        out.append("--functional")
    if not cfg.shuffle:
        out.append("--no-shuffle")
    if cfg.noise_scale:
        out.append("--noise-scale")
    return out
