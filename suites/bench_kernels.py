"""Kernel speed: HEP step and per-layer GFLOP/s, % of the measured peak, ratio to PyTorch.

Rates are ``track_*`` benchmarks with units, each taken within one asv run so ratios compare
like with like on a noisy machine.
"""

from __future__ import annotations

import numpy as np

import kernels
from kernels import LayerTimer

from . import common


class HEPStep:
    """The HEP training step at full size, batch 8, all cores: whole step and conv layers.

    One measurement (``setup_cache``) feeds every benchmark of the class: the step's best of
    3, per-layer times as the median of 5 more timed steps, and the measured peak (the larger of the
    FMA loop and sgemm) taken in the same process. Each of the 5 steps is followed by a short
    FMA probe: ``track_percent_of_paired_peak`` divides each step's rate by its own probe's
    and takes the median (see :mod:`perfmodel.measure.node`).
    """

    timeout = 900
    params = ["step", "conv1", "conv2", "conv3", "conv4", "conv5"]
    param_names = ["part"]

    def setup_cache(self):
        from perfmodel.measure.node import fma_probe
        from perfmodel.measure.peak import fma_peak

        kernels.set_num_threads(common.threads())
        probe = fma_probe(common.threads())
        net = kernels.hep_net()
        x, y = common.hep_batch()
        led = net.ledger(common.HEP_BATCH)
        step_s = common.best_of(lambda: net.train_step(x, y, lr=1e-4), 3)
        per_layer: dict[str, list[float]] = {}
        probes: list[float] = []
        timer = LayerTimer()
        for _ in range(5):  # per-layer times: the median of 5 timed steps
            timer.reset()
            net.train_step(x, y, lr=1e-4, timer=timer)
            probes.append(probe())
            for r in led:
                sec = sum(s for (name, _), s in timer.seconds.items() if name == r.name)
                per_layer.setdefault(r.name, []).append(sec)
        flop_rate = {"step": led.step_flop / step_s}
        paired = {"step": flop_rate["step"] / float(np.median(probes))}
        for r in led:
            secs = np.array(per_layer[r.name])
            if secs.min() > 0:
                flop_rate[r.name] = r.train_flop / float(np.median(secs))
                paired[r.name] = float(np.median(r.train_flop / secs / np.array(probes)))
        from perfmodel.measure.peak import sgemm_peak

        sgemm = sgemm_peak(2048, 3)[0].max
        peak = max(fma_peak(common.threads(), repeats=3)[0].max, sgemm)
        return {"flop_rate": flop_rate, "peak": peak, "sgemm": sgemm, "paired": paired}

    def track_gflops(self, cache, part):
        return cache["flop_rate"][part] / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_percent_of_peak(self, cache, part):
        return 100.0 * cache["flop_rate"][part] / cache["peak"]

    track_percent_of_peak.unit = "%"

    def track_percent_of_sgemm_peak(self, cache, part):
        """#29's yardstick: the share of OpenBLAS sgemm's rate at 2048^3, same process."""
        return 100.0 * cache["flop_rate"][part] / cache["sgemm"]

    track_percent_of_sgemm_peak.unit = "%"

    def track_percent_of_paired_peak(self, cache, part):
        return 100.0 * cache["paired"][part]

    track_percent_of_paired_peak.unit = "%"


class TorchRatio:
    """Numba HEP step speed over PyTorch's faster layout (NCHW or channels-last), one run:
    steps timed in rounds (ours, torch NCHW, torch channels-last), the ratio taken round by
    round and its median kept, so a slow spell of the shared machine falls on both sides."""

    timeout = 900
    number = 1
    repeat = 1

    def setup(self):
        from perfmodel.measure import node, peers

        if not peers.torch_available():
            raise NotImplementedError("torch (the peers extra) is not installed")
        kernels.set_num_threads(common.threads())
        self.net = kernels.hep_net()
        x, y = common.hep_batch()
        ours = node.train_step_timer(self.net, x, y)
        ours()  # the JIT and first-touch pages, outside the rounds
        theirs = {cl: peers.torch_step(self.net, x, y, common.threads(), cl)
                  for cl in (False, True)}
        rounds = peers.interleaved_steps(ours, theirs, 5)
        self.ratio = min(rounds.speed_ratio(cl).median for cl in theirs)

    def track_ratio_to_torch(self):
        return self.ratio

    track_ratio_to_torch.unit = "ratio"


#: the HEP step's GEMM shapes at 224x224, batch 8: (M, K, N, B transposed); conv1-conv2 run
#: one GEMM per image, conv4 one for the batch's 8 images of 28x28
HEP_GEMMS = {
    "conv1 forward": (128, 28, 50176, False),
    "conv1 weight gradient": (128, 50176, 28, True),
    "conv2 forward": (128, 1153, 12544, False),
    "conv2 weight gradient": (128, 12544, 1153, True),
    "conv4 forward": (128, 1153, 784 * 8, False),
    "sgemm 2048": (2048, 2048, 2048, False),
}


class OtherBLAS:
    """#29: is another CBLAS faster than numpy's OpenBLAS at the HEP step's GEMM shapes? Set
    ``PERFMODEL_OTHER_CBLAS`` to the library (e.g. ``libmkl_rt.so.3`` from MKL's wheel);
    skipped otherwise. Its GFLOP/s over numpy's OpenBLAS's, each the best of 3 calls, same
    process and threads; setup checks that both compute the same product."""

    params = list(HEP_GEMMS)
    param_names = ["gemm"]
    timeout = 300
    number = 1
    repeat = 1

    def setup(self, gemm):
        import os

        from kernels import blas

        path = os.environ.get("PERFMODEL_OTHER_CBLAS")
        if not path:
            raise NotImplementedError("PERFMODEL_OTHER_CBLAS is not set")
        if not blas.AVAILABLE:
            raise NotImplementedError(blas.describe())
        kernels.set_num_threads(common.threads())
        other = blas.load_cblas(path, common.threads())
        m, k, n, tb = HEP_GEMMS[gemm]
        rng = np.random.default_rng(common.SEED)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        c, c2 = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
        ours = common.best_of(lambda: blas.sgemm(a, b, c, trans_b=tb))
        theirs = common.best_of(lambda: other(a, b, c2, trans_b=tb))
        if not np.allclose(c, c2, rtol=1e-3, atol=1e-3 * np.abs(c).max()):
            raise RuntimeError(f"{path} and numpy's OpenBLAS disagree on {gemm}")
        self.ratio = ours / theirs

    def track_speed_over_numpy_blas(self, gemm):
        return self.ratio

    track_speed_over_numpy_blas.unit = "ratio"


class Compile:
    """JIT cost apart from run time: a first call of the conv kernels in a fresh process."""

    timeout = 300

    def time_first_call_fresh_process(self):
        import subprocess
        import sys

        subprocess.run([sys.executable, "-c",
                        "import numpy as np, kernels; c = kernels.Conv2d(4, 4, 3, 1, 1); "
                        "c.backward(c.forward(np.ones((1, 4, 8, 8), np.float32)))"],
                       check=True)


class Layers:
    """Per-layer forward time of the big HEP convolution (conv2: 128->128, 112x112)."""

    def setup(self):
        kernels.set_num_threads(common.threads())
        rng = np.random.default_rng(common.SEED)
        self.conv = kernels.Conv2d(128, 128, 3, 1, 1, seed=common.SEED)
        self.x = rng.standard_normal((8, 128, 112, 112), dtype=np.float32)
        self.conv.forward(self.x)

    def time_conv2_forward(self):
        self.conv.forward(self.x)
