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
    """The HEP training step at full size, batch 8, all cores."""

    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        kernels.set_num_threads(common.threads())
        self.net = kernels.hep_net()
        self.x, self.y = common.hep_batch()
        self.led = self.net.ledger(common.HEP_BATCH)
        timer = LayerTimer()
        self.net.train_step(self.x, self.y, lr=1e-4)  # warm-up and JIT
        self.step_s = common.best_of(lambda: self.net.train_step(self.x, self.y, lr=1e-4), 3)
        timer.reset()
        self.net.train_step(self.x, self.y, lr=1e-4, timer=timer)
        self.layer_s = {}
        for (name, phase), s in timer.seconds.items():
            self.layer_s[name] = self.layer_s.get(name, 0.0) + s
        from perfmodel.peak import fma_peak

        self.peak = fma_peak(common.threads(), repeats=3)[0].max

    def track_step_gflops(self):
        return self.led.step_flop / self.step_s / 1e9

    track_step_gflops.unit = "GFLOP/s"

    def track_step_samples_per_s(self):
        return common.HEP_BATCH / self.step_s

    track_step_samples_per_s.unit = "samples/s"

    def track_conv_percent_of_peak(self, layer):
        r = self.led.row(layer)
        return 100.0 * r.train_flop / self.layer_s[layer] / self.peak

    track_conv_percent_of_peak.unit = "%"
    track_conv_percent_of_peak.params = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    track_conv_percent_of_peak.param_names = ["layer"]


class TorchRatio:
    """Numba HEP step speed over PyTorch's faster layout (NCHW or channels-last), one run."""

    timeout = 900
    number = 1
    repeat = 1

    def setup(self):
        from perfmodel import peers

        if not peers.torch_available():
            raise NotImplementedError("torch (the peers extra) is not installed")
        kernels.set_num_threads(common.threads())
        self.net = kernels.hep_net()
        x, y = common.hep_batch()
        self.ours = common.best_of(lambda: self.net.train_step(x, y, lr=1e-4), 3)
        self.torch = min(peers.measure_step(self.net, x, y, common.threads(), cl, 3).min
                         for cl in (False, True))

    def track_ratio_to_torch(self):
        return self.torch / self.ours

    track_ratio_to_torch.unit = "ratio"


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
