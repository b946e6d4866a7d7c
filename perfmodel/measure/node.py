"""Single-node measurement: per-layer and whole-step FLOP rates of a training step.

A training step is forward, loss, backward and the SGD update, timed with
``time.perf_counter``: warm-up steps first (the first call's JIT compile or cache load is
reported apart as ``compile``), then ``repeats`` timed steps; each figure is the median with
min and max kept. Per-layer times come from the same timed steps (a :class:`LayerTimer`
around every layer); a convolution's backward is split into its data and weight parts by the
kernel's own timers. FLOPs come from the nets' ledger (2 per multiply-add, padded taps
counted), never from the timing code.

"% of peak" is taken two ways. Against the measured peak: the best the FMA loop or sgemm
showed before and after the steps (conservative: on a shared machine a step can lose cycles
that the best probe did not). Paired: each timed step is followed by a short FMA probe, and
each step's rate is divided by its own probe's, so that a drift of the machine's throughput
moves both alike; the median over the steps is reported (``paired_peak_fraction`` rows).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import kernels
from kernels import LayerTimer, Ledger
from kernels.loss import DetectionTarget

from ..results import Repeats, make_row
from . import peak

Progress = Callable[[str], None]


def build_net(name: str, image_size: int | None = None, seed: int = 0,
              filters: int | None = None, dropout: float | None = None,
              device: str = "cpu") -> Any:
    """A net by name at its published size, or scaled: ``image_size`` and, for HEP, the conv
    width ``filters`` and the ``dropout`` probability (published 0.5; 0 drops the layers, as
    the convergence runs train). ``device="cuda"``: its twin on the Numba CUDA kernels."""
    kw: dict[str, Any] = dict(seed=seed)
    if device != "cpu":
        kw["device"] = device
    if dropout is not None:
        if name != "hep":
            raise ValueError(f"dropout applies to the HEP net only (net={name!r})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout} is out of range (allowed 0 <= p < 1)")
        kw["dropout"] = dropout
    if image_size is not None:
        kw["image_size"] = image_size
    if filters is not None:
        if name != "hep":
            raise ValueError(f"filters applies to the HEP net only (net={name!r})")
        kw["filters"] = filters
    return kernels.NETS[name](**kw)


def synthetic_batch(net: kernels.Net, batch: int, seed: int = 0) -> tuple[np.ndarray, Any]:
    """Seeded random inputs and targets of the right shapes (timing does not depend on them)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *net.input_shape), dtype=np.float32)
    if isinstance(getattr(net, "cpu", net), kernels.ClimateNet):
        _, _, gh, gw = net.grid_shape(batch)
        y = DetectionTarget(obj=(rng.random((batch, gh, gw)) < 0.1).astype(np.int8),
                            cls=rng.integers(0, 4, (batch, gh, gw)),
                            box=rng.standard_normal((batch, 4, gh, gw)).astype(np.float32),
                            labelled=rng.random(batch) < 0.5)
    else:
        y = rng.integers(0, 2, batch)
    return x, y


def phase_bytes(row: kernels.LayerCost, phase: str) -> float:
    """Compulsory traffic of one pass in bytes (float32): what must be read and written at
    least once. Forward reads x and the weights and writes y; backward-data reads dy and the
    weights (element-wise layers: also x) and writes dx; backward-weight reads x and dy and
    writes dW."""
    inp = float(np.prod(row.input_shape))
    out = float(np.prod(row.output_shape))
    p = float(row.params)
    if phase == "forward":
        return 4 * (inp + out + p)
    if phase == "backward_data":
        return 4 * (out + inp + (p if p else inp))
    if phase == "backward_weight":
        return 4 * (inp + out + p)
    return 4 * (2 * inp + out + 2 * p)  # backward, both parts together


@dataclass
class StepMeasurement:
    """What :func:`measure_step` found, with repetitions kept."""

    net: str
    batch: int
    image_size: int
    ledger: Ledger
    step_s: Repeats
    first_call_s: float
    layer_s: dict[tuple[str, str], Repeats] = field(default_factory=dict)
    #: FP32 FLOP/s of a short FMA-loop probe run right after each timed step (empty when not
    #: probed): the machine's rate at the time of that step, for paired "% of peak"
    probe_flops: list[float] = field(default_factory=list)
    #: (layer, phase, part) -> seconds per timed step of a convolution's passes: im2col, gemm,
    #: layout (the kernels' own timers, ``parts_s``)
    parts_s: dict[tuple[str, str, str], Repeats] = field(default_factory=dict)
    #: layer -> the layer that does its work (``Net.fused_layers``): its FLOPs count there
    fused: dict[str, str] = field(default_factory=dict)

    def paired_fraction(self, layer: str, phases: list[str]) -> Repeats | None:
        """Per timed step, the FLOP/s of ``layer`` over those ``phases`` divided by the FMA
        probe that followed that step; None without probes. On a shared machine whose
        throughput drifts, this pairs each rate with the machine's rate of the same moment
        (a fraction of 1, not a percentage)."""
        reps = [self.layer_s[(layer, ph)] for ph in phases if (layer, ph) in self.layer_s]
        n = len(self.probe_flops)
        if not n or not reps or any(len(r.samples) != n for r in reps):
            return None
        flop = sum(self.phase_flop(layer, ph) for ph in phases if (layer, ph) in self.layer_s)
        t = [sum(r.samples[i] for r in reps) for i in range(n)]
        if not flop or min(t) <= 0:
            return None
        return Repeats([flop / t[i] / self.probe_flops[i] for i in range(n)])

    def paired_step_fraction(self) -> Repeats | None:
        """:meth:`paired_fraction` for the whole step (its FLOP over each step's time)."""
        steps = self.step_s.samples
        if not self.probe_flops or len(steps) != len(self.probe_flops):
            return None
        return Repeats([self.ledger.step_flop / t / p for t, p in zip(steps, self.probe_flops)])

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.step_s.median

    @property
    def flop_rate(self) -> float:
        """Whole-step FLOP/s: (forward + backward + update FLOP) / median step time."""
        return self.ledger.step_flop / self.step_s.median

    def phase_flop(self, layer: str, phase: str) -> float:
        """The ledger's FLOP of ``layer`` in ``phase``, with those of the layers fused into it;
        0 for a fused layer, whose work its host does and times."""
        if layer == "update":
            return float(self.ledger.update_flop)
        if layer in self.fused:
            return 0.0
        flop = 0.0
        for name in [layer] + [f for f, host in self.fused.items() if host == layer]:
            r = self.ledger.row(name)
            flop += {"forward": r.forward_flop, "backward_data": r.backward_data_flop,
                     "backward_weight": r.backward_weight_flop,
                     "backward": r.backward_flop}[phase]
        return float(flop)

    def rows(self, base: dict[str, Any], implementation: str = "numba") -> list[dict]:
        """Tidy rows: per layer and phase (time, FLOP/s), the step (time, samples/s, FLOP/s),
        and the first call's extra time (JIT compile or cache load)."""
        common = dict(subject=self.net, batch=self.batch, image_size=self.image_size,
                      implementation=implementation)
        out = []
        for (layer, phase), rep in self.layer_s.items():
            flop = self.phase_flop(layer, phase)
            nbytes = 0.0 if layer == "update" else phase_bytes(self.ledger.row(layer), phase)
            kw = dict(common, what="layer", layer=layer, phase=phase, flop=flop, bytes=nbytes,
                      repeats=len(rep.samples),
                      note=f"fused into {self.fused[layer]}" if layer in self.fused else "")
            out.append(make_row(base, metric="time", value=rep.median, unit="s",
                                min=rep.min, max=rep.max, **kw))
            if flop:
                out.append(make_row(base, metric="flop_rate", value=flop / rep.median,
                                    unit="FLOP/s", min=flop / rep.max, max=flop / rep.min,
                                    **kw))
            paired = self.paired_fraction(layer, [phase]) if flop else None
            if paired:
                out.append(make_row(base, metric="paired_peak_fraction", value=paired.median,
                                    unit="1", min=paired.min, max=paired.max, **kw))
        st = self.step_s
        kw = dict(common, what="step", phase="step", flop=float(self.ledger.step_flop),
                  repeats=len(st.samples))
        out.append(make_row(base, metric="time", value=st.median, unit="s", min=st.min,
                            max=st.max, **kw))
        out.append(make_row(base, metric="time", value=st.mean, unit="s", stat="mean",
                            min=st.min, max=st.max, **kw))
        out.append(make_row(base, metric="sample_rate", value=self.batch / st.median,
                            unit="samples/s", min=self.batch / st.max,
                            max=self.batch / st.min, **kw))
        out.append(make_row(base, metric="flop_rate", value=self.flop_rate, unit="FLOP/s",
                            min=self.ledger.step_flop / st.max,
                            max=self.ledger.step_flop / st.min, **kw))
        paired = self.paired_step_fraction()
        if paired:
            out.append(make_row(base, metric="paired_peak_fraction", value=paired.median,
                                unit="1", min=paired.min, max=paired.max, **kw))
        if self.probe_flops:
            pr = Repeats(self.probe_flops)
            out.append(make_row(base, what="probe", subject="fma", metric="flop_rate",
                                value=pr.median, unit="FLOP/s", min=pr.min, max=pr.max,
                                repeats=len(pr.samples), batch=self.batch,
                                image_size=self.image_size, implementation="numba"))
        for (layer, phase, part), rep in self.parts_s.items():
            out.append(make_row(base, what="part", layer=layer, phase=phase, metric="time",
                                value=rep.median, unit="s", min=rep.min, max=rep.max,
                                repeats=len(rep.samples), note=part, **common))
        out.append(make_row(base, what="compile", metric="time", stat="single",
                            value=max(self.first_call_s - st.median, 0.0), unit="s",
                            **dict(common, phase="step")))
        return out


def _layer_phases(net: kernels.Net, timer: LayerTimer) -> dict[tuple[str, str], float]:
    """Turn one step's timer into (layer, phase) seconds, splitting backward where measured."""
    layers = dict(net.named_layers())
    out: dict[tuple[str, str], float] = {}
    for (name, phase), sec in timer.seconds.items():
        if name == "update":
            out[(name, "update")] = sec
            continue
        if name == "loss" or name not in layers:
            continue  # the loss is timed but is not a ledger layer of its own
        layer = layers[name]
        if phase == "backward":
            split = getattr(layer, "last_backward_s", None)
            if split:
                total = sum(split.values())
                for ph, s in split.items():  # scale the parts to the timed total
                    out[(name, ph)] = sec * (s / total if total > 0 else 0.5)
                continue
            phase = "backward" if layer.params() else "backward_data"
        out[(name, phase)] = sec
    return out


def measure_step(net: kernels.Net, batch: int, repeats: int = 5, warmup: int = 1,
                 seed: int = 0, progress: Progress | None = None,
                 probe: Callable[[], float] | None = None) -> StepMeasurement:
    """Time ``repeats`` training steps of ``net`` at ``batch`` after ``warmup`` steps; with
    ``probe`` (a callable returning FLOP/s, e.g. :func:`fma_probe`), run it after each timed
    step, outside the step's time."""
    x, y = synthetic_batch(net, batch, seed)
    lr = 1e-4  # small, so that repeated steps on one batch stay finite
    t0 = time.perf_counter()
    net.train_step(x, y, lr=lr)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        net.train_step(x, y, lr=lr)
    steps: list[float] = []
    probes: list[float] = []
    per_layer: dict[tuple[str, str], list[float]] = {}
    parts: dict[tuple[str, str, str], list[float]] = {}
    timer = LayerTimer()
    timed_parts = [(name, layer.parts_s) for name, layer in net.named_layers()
                   if isinstance(getattr(layer, "parts_s", None), dict)]
    for i in range(repeats):
        timer.reset()
        for _, p in timed_parts:
            p.clear()
        t0 = time.perf_counter()
        net.train_step(x, y, lr=lr, timer=timer)
        steps.append(time.perf_counter() - t0)
        for key, sec in _layer_phases(net, timer).items():
            per_layer.setdefault(key, []).append(sec)
        for name, p in timed_parts:
            for (phase, part), sec in p.items():
                parts.setdefault((name, phase, part), []).append(sec)
        if probe is not None:
            probes.append(probe())
        if progress:
            progress(f"{getattr(net, 'name', '?')} batch {batch}: step {i + 1}/{repeats}")
    return StepMeasurement(net=getattr(net, "name", type(net).__name__), batch=batch,
                           image_size=int(net.input_shape[1]), ledger=net.ledger(batch),
                           step_s=Repeats(steps), first_call_s=first,
                           layer_s={k: Repeats(v) for k, v in per_layer.items()},
                           probe_flops=probes,
                           fused=dict(getattr(net, "fused_layers", dict)()),
                           parts_s={k: Repeats(v) for k, v in parts.items() if len(v) == repeats})


def train_step_timer(net: kernels.Net, x: np.ndarray, y: Any, lr: float = 1e-4
                     ) -> Callable[[], float]:
    """A callable that runs one training step of ``net`` on the batch (x, y), as
    :func:`measure_step` times it, and returns its wall time (s)."""

    def step() -> float:
        t0 = time.perf_counter()
        net.train_step(x, y, lr=lr)
        return time.perf_counter() - t0

    return step


#: the FMA probe after each timed step: this many timed calls of about this many seconds,
#: the best kept (the first call after a step can still find a core slow to ramp up)
PROBE_REPEATS = 3
PROBE_SECONDS = 0.15


def fma_probe(threads: int, quick: bool = False) -> Callable[[], float]:
    """A callable that measures the FMA loop on ``threads`` threads briefly (no warm-up: it
    runs right after a step has kept the cores busy) and returns its best FLOP/s."""
    seconds = 0.05 if quick else PROBE_SECONDS

    def run() -> float:
        return peak.fma_peak(threads, PROBE_REPEATS, seconds=seconds, warmup_s=0.0)[0].max

    return run


def peak_rows(base: dict[str, Any], threads: int, repeats: int = 5, quick: bool = False
              ) -> tuple[list[dict], dict[str, float]]:
    """Measured FP32 peak (FMA loop, sgemm) and triad bandwidth as tidy rows, and the best
    values keyed ``fma``, ``sgemm``, ``triad`` (FLOP/s, FLOP/s, B/s) and ``peak``: the larger
    of the two rates (both are lower bounds of the machine's peak; on a shared machine one
    of them can lose a time slice)."""
    warmup_s = 0.5 if quick else peak.FMA_WARMUP_S
    fma, fma_flop = peak.fma_peak(threads, repeats, seconds=0.1 if quick else 0.3,
                                  warmup_s=warmup_s)
    gemm, gemm_flop = peak.sgemm_peak(1024 if quick else 2048, repeats)
    bw, bw_bytes = peak.triad_bandwidth((1 << 23) if quick else (1 << 25), repeats)
    rows, best = [], {}
    for subject, rep, unit, metric, flop, nbytes, impl in (
            ("fma", fma, "FLOP/s", "flop_rate", fma_flop, 0.0, "numba"),
            ("sgemm", gemm, "FLOP/s", "flop_rate", gemm_flop, 0.0, "openblas"),
            ("triad", bw, "B/s", "bandwidth", 0.0, bw_bytes, "numba")):
        what = "bandwidth" if subject == "triad" else "peak"
        rows.append(make_row(base, what=what, subject=subject, metric=metric, value=rep.max,
                             unit=unit, stat="max", min=rep.min, max=rep.max,
                             repeats=len(rep.samples), flop=flop, bytes=nbytes,
                             implementation=impl))
        best[subject] = rep.max
    best["peak"] = max(best["fma"], best["sgemm"])
    if threads > 1:  # are the threads on cores of their own? (not part of the peak)
        one, one_flop = peak.fma_peak(1, repeats, seconds=0.1 if quick else 0.3,
                                      warmup_s=warmup_s)
        rows.append(make_row(base, what="placement", subject="fma", metric="flop_rate",
                             value=one.max, unit="FLOP/s", stat="max", min=one.min,
                             max=one.max, repeats=len(one.samples), flop=one_flop, bytes=0.0,
                             implementation="numba", threads=1))
        best["fma_1thread"] = one.max
    return rows, best


#: ``threads`` FMA loops that reach less than this many times one thread's rate share cores
SHARED_CORE_SCALING = 0.75


def placement_warning(best: dict[str, float], threads: int) -> str | None:
    """A line for the user when the FMA loop on ``threads`` threads scaled poorly over one
    thread: the cores were shared (SMT siblings, another tenant, a VM's vCPU placement) or
    descheduled, so the run's peak and every "% of peak" describe that moment, not the node."""
    one = best.get("fma_1thread")
    if threads < 2 or not one:
        return None
    scaling = best["fma"] / one
    if scaling >= SHARED_CORE_SCALING * threads:
        return None
    return (f"note: the FMA loop on {threads} threads ran {scaling:.2f}x one thread's rate "
            f"({best['fma'] / 1e9:.1f} vs {one / 1e9:.1f} GFLOP/s): the cores were shared or "
            "taken away while the peak was measured; compare ratios taken within one run")


# --- the rate with every rank of the node busy -------------------------------------------------

def _companion(spec: dict[str, Any], batch: int, threads: int, cores: set[int], ready,
               stop) -> None:  # pragma: no cover - runs in a child process
    """A companion rank: on its own cores, train steps of the same net and batch until told to
    stop, as a harness rank beside the measured one would."""
    os.sched_setaffinity(0, cores)
    kernels.set_num_threads(threads)
    net = build_net(**spec)
    x, y = synthetic_batch(net, batch, seed=1)
    net.train_step(x, y, lr=1e-4)  # compiled and warm before the measured rank starts
    ready.set()
    while not stop.is_set():
        net.train_step(x, y, lr=1e-4)


class BusyNode:
    """``ranks - 1`` companion processes training the same net and batch on the node's other
    cores (``threads`` each) while the caller measures: the per-rank rate with every rank of
    the node busy, as the harness runs ``ranks`` workers (memory bandwidth, caches and the
    shared last-level cache are then contended). A context manager; the companions start
    warm and stop on exit."""

    def __init__(self, spec: dict[str, Any], batch: int, ranks: int, threads: int,
                 cores: list[int]) -> None:
        need = ranks * threads
        if len(cores) < need:
            raise ValueError(f"{ranks} ranks x {threads} threads need {need} cores "
                             f"({len(cores)} available)")
        ctx = mp.get_context("spawn")  # a fresh interpreter: no thread pool carried over
        self._stop = ctx.Event()
        self._procs, self._ready = [], []
        for k in range(1, ranks):
            ready = ctx.Event()
            own = set(cores[k * threads:(k + 1) * threads])
            self._procs.append(ctx.Process(target=_companion, daemon=True,
                                           args=(spec, batch, threads, own, ready, self._stop)))
            self._ready.append(ready)

    def __enter__(self) -> "BusyNode":
        for p in self._procs:
            p.start()
        for p, ready in zip(self._procs, self._ready):
            while not ready.wait(0.5):
                if not p.is_alive():
                    raise RuntimeError(f"a companion rank exited with code {p.exitcode}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
