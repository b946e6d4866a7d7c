"""A framework's own training step on the node users run on: PyTorch on a CPU or a GPU.

``perfmodel node --framework torch`` times what a user's job will run: the framework's
forward, loss, backward and SGD-with-momentum update of a network, on ``cpu`` or ``cuda``.
The subject is

* a zoo network (:mod:`kernels.zoo`), built in torch from the very definition the model's
  ledger comes from (:class:`GraphSpec` records the definition's calls as a graph; no
  torchvision needed), so every timed layer is a ledger row;
* the project's HEP net (its torch mirror, :mod:`.peers`, the same layers and weights);
* a user's module, ``package.module:function``, counted by :func:`.ledger.module_ledger`.

FLOP are the project's (2 per multiply-add; :mod:`kernels.base`), from the ledger, never from
the timing: a rate here compares with the Numba kernels' and the model's on one convention.

Timing. The whole step at each batch of a sweep (the rate-against-batch curve the model
needs) is timed without hooks: warm-up steps, then ``repeats`` timed steps, each ended by a
device synchronize on a GPU. Per-layer forward and backward times come from separate hooked
steps: a forward pre-hook and hook, and a full backward pre-hook and hook, on every module
that is a ledger row, read with ``time.perf_counter`` on the CPU and CUDA events on a GPU.
A backward time runs from the moment the layer's output gradient is ready to the moment its
input gradient is; for the first layer, whose input needs no gradient, the hook fires when
the weight gradients are done. Hooks forbid in-place operations on a hooked module's
tensors, so the per-layer steps turn ``inplace`` off on the modules that have it (the whole
step keeps the module as given); the rows say so in ``note``.

torch is imported only inside these functions (the ``peers`` extra).
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import kernels
from kernels.zoo import ZOO, Dims, Spec

from ..results import Repeats
from ..ui import UserError
from . import ledger as L
from . import peers

DEVICES = ("cpu", "cuda")
FRAMEWORKS = ("torch",)


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Node(tuple):
    """Dims that remember which recorded operation produced them (-1: the input)."""

    op: int = -1


class GraphSpec(Spec):
    """A zoo definition recorded as a graph while its costs are counted: each call appends an
    operation (kind, the ledger row it makes or '', the operations it reads, its arguments)
    and returns dims tagged with it. Dims built by hand (a flatten) read the last operation.
    A framework builds the same network from :attr:`ops`."""

    def __init__(self, name: str, input_dims: Dims, batch: int = 1) -> None:
        super().__init__(name, input_dims, batch)
        self.ops: list[tuple[str, str, list[int], dict[str, Any]]] = []
        self.input_dims = self._tag(input_dims, -1)

    @staticmethod
    def _tag(dims: Dims, op: int) -> _Node:
        n = _Node(dims)
        n.op = op
        return n

    def _src(self, x: Dims) -> int:
        return x.op if isinstance(x, _Node) else len(self.ops) - 1

    def _record(self, kind: str, inputs: list[Dims], y: Dims, row: bool = True,
                **args: Any) -> _Node:
        self.ops.append((kind, self.rows[-1].name if row else "",
                         [self._src(x) for x in inputs], args))
        return self._tag(y, len(self.ops) - 1)

    def conv(self, x, c_out, k, s=1, p=0, bias=False, label=None, d=1):
        y = super().conv(x, c_out, k, s, p, bias, label, d)
        return self._record("conv", [x], y, c_in=x[0], c_out=c_out, k=_pair(k), s=_pair(s),
                            p=_pair(p), bias=bias, d=d)

    def conv3d(self, x, c_out, k, bias=True):
        return self._record("conv3d", [x], super().conv3d(x, c_out, k, bias), c_in=x[0],
                            c_out=c_out, k=k, bias=bias)

    def maxpool3d(self, x, k):
        return self._record("maxpool3d", [x], super().maxpool3d(x, k), k=k)

    def leaky_relu(self, x):
        return self._record("leaky_relu", [x], super().leaky_relu(x))

    def bn(self, x):
        return self._record("bn", [x], super().bn(x), c=x[0])

    def relu(self, x):
        return self._record("relu", [x], super().relu(x))

    def dropout(self, x):
        return self._record("dropout", [x], super().dropout(x))

    def upsample(self, x, h, w):
        return self._record("upsample", [x], super().upsample(x, h, w), size=(h, w))

    def maxpool(self, x, k, s, p=0):
        return self._record("maxpool", [x], super().maxpool(x, k, s, p), k=k, s=s, p=p)

    def avgpool(self, x, k, s, p=0):
        return self._record("avgpool", [x], super().avgpool(x, k, s, p), k=k, s=s, p=p)

    def global_avgpool(self, x):
        return self._record("global_avgpool", [x], super().global_avgpool(x))

    def add(self, x, shortcut=None):
        if shortcut is None:
            raise ValueError(f"{self.name}: a residual add needs its shortcut to be built")
        return self._record("add", [x, shortcut], super().add(x, shortcut))

    def fc(self, x, n_out, bias=True, label=None):
        y = super().fc(x, n_out, bias, label)
        return self._record("fc", [x], y, n_in=math.prod(x), n_out=n_out, bias=bias)

    def concat(self, *branches):
        return self._record("concat", list(branches), super().concat(*branches), row=False)


@dataclass
class Subject:
    """What is timed: a torch module, its ledger rows (name -> module, FLOP per sample) and
    how to make a batch and its loss."""

    name: str
    module: Any
    input_shape: tuple[int, ...]
    #: ledger rows in forward order: (name, kind, params, forward FLOP, backward FLOP) per
    #: sample; rows without a module (a functional add) carry FLOP but no time
    rows: list[tuple[str, str, int, float, float]]
    #: ledger row name -> the torch module that computes it
    modules: dict[str, Any]
    loss: str = "classify"   # classify (cross-entropy per output), mse
    image_size: int = 0
    note: str = ""
    uncounted: list[str] = field(default_factory=list)

    @property
    def train_flop_per_sample(self) -> float:
        return sum(f + b for _, _, _, f, b in self.rows)

    @property
    def params(self) -> int:
        return sum(p for _, _, p, _, _ in self.rows)

    def step_flop(self, batch: int) -> float:
        """FLOP of one step: forward and backward of ``batch`` samples, and the SGD update
        (6 per parameter, as the kernels' ledger counts it)."""
        return batch * self.train_flop_per_sample + kernels.SGD.FLOP_PER_PARAM * self.params


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _graph_module(g: GraphSpec):
    """A torch module that runs the recorded graph; its outputs are the operations nobody
    reads (the classifier, and an auxiliary head where the definition has one)."""
    import torch  # optional peer (the peers extra), imported only when measured
    from torch import nn

    class Add(nn.Module):
        def forward(self, a, b):
            return a + b

    class Upsample(nn.Module):
        def __init__(self, size) -> None:
            super().__init__()
            self.size = tuple(size)

        def forward(self, x):
            return nn.functional.interpolate(x, size=self.size, mode="bilinear",
                                             align_corners=False)

    class Flatten(nn.Module):
        def forward(self, x):
            return torch.flatten(x, 1)

    def same3d(k: int):  # Keras 'same' for an even kernel: k - 1 taps, after the input last
        lo = (k - 1) // 2
        return nn.ConstantPad3d((lo, k - 1 - lo) * 3, 0.0)

    def build(kind: str, a: dict[str, Any]):
        if kind == "conv":
            return nn.Conv2d(a["c_in"], a["c_out"], a["k"], a["s"], a["p"], dilation=a["d"],
                             bias=a["bias"])
        if kind == "conv3d":
            return nn.Sequential(same3d(a["k"]), nn.Conv3d(a["c_in"], a["c_out"], a["k"],
                                                           bias=a["bias"]))
        if kind == "fc":
            return nn.Sequential(Flatten(), nn.Linear(a["n_in"], a["n_out"], bias=a["bias"]))
        return {"bn": lambda: nn.BatchNorm2d(a["c"]), "relu": nn.ReLU,
                "leaky_relu": lambda: nn.LeakyReLU(0.3), "dropout": nn.Dropout,
                "maxpool": lambda: nn.MaxPool2d(a["k"], a["s"], a["p"]),
                "avgpool": lambda: nn.AvgPool2d(a["k"], a["s"], a["p"]),
                "global_avgpool": lambda: nn.AdaptiveAvgPool2d(1),
                "maxpool3d": lambda: nn.MaxPool3d(a["k"]),
                "upsample": lambda: Upsample(a["size"]), "add": Add}[kind]()

    class GraphNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict({name: build(kind, a) for kind, name, _, a in g.ops
                                         if name})
            self.plan = [(name, inputs) for _, name, inputs, _ in g.ops]
            read = {i for _, inputs in self.plan for i in inputs}
            self.sinks = [i for i in range(len(self.plan)) if i not in read]

        def forward(self, x):
            values = {-1: x}
            for i, (name, inputs) in enumerate(self.plan):
                args = [values[j] for j in inputs]
                values[i] = self.layers[name](*args) if name else torch.cat(args, 1)
            out = tuple(values[i] for i in self.sinks)
            return out[0] if len(out) == 1 else out

    return GraphNet()


def zoo_subject(net: str, image_size: int | None = None) -> Subject:
    """A zoo network in torch, from its definition (:class:`GraphSpec`)."""
    kw = {} if image_size is None else {"image_size": image_size}
    try:
        g = ZOO[net](cls=GraphSpec, **kw)
    except ValueError as e:
        raise UserError(f"--image-size={image_size}: {e}") from None
    module = _graph_module(g)
    rows = [(r.name, r.kind, r.params, float(r.forward_flop), float(r.backward_flop))
            for r in g.rows]
    modules = {name: module.layers[name] for name in module.layers}
    return Subject(net, module, tuple(g.input_dims), rows, modules,
                   loss="mse" if net == "cosmoflow" else "classify",
                   image_size=int(g.input_dims[1]))


def hep_subject(image_size: int | None = None) -> Subject:
    """The HEP net's torch mirror (the same layers and weights as the Numba net)."""
    net = kernels.NETS["hep"](**({} if image_size is None else {"image_size": image_size}))
    module, _ = peers.mirror(net)
    led = net.ledger(1)
    children = list(module.children())
    modules = {name: children[i] for i, (name, _) in enumerate(net.named_layers())}
    rows = [(r.name, r.kind, r.params, float(r.forward_flop), float(r.backward_flop))
            for r in led.rows if r.name in modules]
    return Subject(net.name, module, tuple(net.input_shape), rows, modules,
                   image_size=int(net.input_shape[1]))


def user_subject(target: str, input_shape: tuple[int, ...]) -> Subject:
    """A user's ``package.module:function`` module, counted by the ledger's tracer (backward
    is counted as twice the forward for layers with parameters and once for the others, the
    zoo's table convention, the first layer's data gradient left out)."""
    module = L.load_module(target)
    led = L.module_ledger(module, input_shape, target)
    named = dict(module.named_modules())
    first = next((i for i, r in enumerate(led.rows) if r.params), -1)
    rows = [(r.layer, r.kind, r.params, r.forward_flop,
             (1 if i == first else 2) * r.forward_flop if r.params else r.forward_flop)
            for i, r in enumerate(led.rows)]
    modules = {r.layer: named[r.layer] for r in led.rows if r.layer in named}
    return Subject(target, module, tuple(input_shape), rows, modules,
                   image_size=int(input_shape[1]) if len(input_shape) > 1 else 0,
                   uncounted=list(led.uncounted))


def subject(net: str | None, model: str | None, image_size: int | None,
            input_shape: tuple[int, ...] | None = None) -> Subject:
    """The subject of ``--net`` (a zoo network or hep) or ``--model`` (with its input shape)."""
    if model is not None:
        return user_subject(model, input_shape or (3, image_size or 224, image_size or 224))
    if net in ZOO:
        return zoo_subject(net, image_size)
    if net == "hep":
        return hep_subject(image_size)
    raise UserError(f"--net={net!r} is not measured through a framework (allowed: "
                    f"{', '.join([*ZOO, 'hep'])}; or --model package.module:function)")


def _batch(s: Subject, batch: int, device: str, seed: int = 0):
    """A seeded random batch on the device and the targets of each output."""
    import torch  # optional peer (the peers extra), imported only when measured

    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *s.input_shape), generator=g).to(device)
    return x, g


def _loss_fn(s: Subject, g) -> Callable:
    """Cross-entropy against random classes for each output (per pixel for a map), or MSE."""
    import torch  # optional peer (the peers extra), imported only when measured
    from torch.nn import functional as F

    targets: dict[tuple, Any] = {}

    def target(o):
        key = (tuple(o.shape), s.loss)
        if key not in targets:
            if s.loss == "mse":
                targets[key] = torch.randn(o.shape, generator=g).to(o.device)
            else:
                shape = (o.shape[0], *o.shape[2:])
                targets[key] = torch.randint(0, o.shape[1], shape, generator=g).to(o.device)
        return targets[key]

    def loss(out):
        outs = out if isinstance(out, tuple) else (out,)
        total = 0.0
        for o in outs:
            o = o.flatten(2) if o.dim() > 2 and s.loss != "mse" else o
            t = target(o)
            total = total + (F.mse_loss(o, t) if s.loss == "mse" else F.cross_entropy(o, t))
        return total

    return loss


def _sync(device: str) -> None:
    if device == "cuda":
        import torch  # optional peer (the peers extra), imported only when measured

        torch.cuda.synchronize()


def _stepper(s: Subject, batch: int, device: str):
    import torch  # optional peer (the peers extra), imported only when measured

    model = s.module.to(device).train()
    x, g = _batch(s, batch, device)
    loss_fn = _loss_fn(s, g)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x)).backward()
        opt.step()

    return step


def measure_step(s: Subject, batch: int, device: str = "cpu", repeats: int = 5,
                 warmup: int = 1, progress: Callable[[str], None] | None = None) -> Repeats:
    """Step times in s (forward, loss, backward, SGD update) at ``batch``, no hooks; on a GPU
    each step ends with a synchronize."""
    step = _stepper(s, batch, device)
    for _ in range(max(warmup, 1)):
        step()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        out.append(time.perf_counter() - t0)
        if progress:
            progress(f"batch {batch}")
    return Repeats(out)


class _LayerClock:
    """Forward and backward hooks on every row's module: seconds per (row, phase) and step.
    A backward ends at the later of the module's backward hook and the accumulation of its
    last weight gradient (the first layer's hook fires before its weight gradients, as its
    input needs none)."""

    def __init__(self, s: Subject, device: str, backward: bool = True) -> None:
        import torch  # optional peer (the peers extra), imported only when measured

        self.cuda = device == "cuda"
        self.torch = torch
        self.starts: dict[tuple[str, str], list] = defaultdict(list)
        self.spans: dict[tuple[str, str], list] = defaultdict(list)
        self.param_ends: dict[str, Any] = {}
        self.handles = []
        for name, m in s.modules.items():
            if hasattr(m, "inplace"):
                m.inplace = False  # hooks forbid in-place ops on a hooked module's tensors
            self.handles += [
                m.register_forward_pre_hook(lambda mod, i, n=name: self._start(n, "forward")),
                m.register_forward_hook(lambda mod, i, o, n=name: self._stop(n, "forward"))]
            if not backward:
                continue
            self.handles += [
                m.register_full_backward_pre_hook(
                    lambda mod, go, n=name: self._start(n, "backward")),
                m.register_full_backward_hook(
                    lambda mod, gi, go, n=name: self._stop(n, "backward"))]
            for p in m.parameters():
                self.handles.append(p.register_post_accumulate_grad_hook(
                    lambda p, n=name: self._param_done(n)))

    def _now(self):
        if self.cuda:
            e = self.torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def _start(self, name: str, phase: str) -> None:
        self.starts[(name, phase)].append(self._now())

    def _stop(self, name: str, phase: str) -> None:
        open_ = self.starts[(name, phase)]
        if open_:  # a module called twice (a shared ReLU) pairs each call with its own start
            self.spans[(name, phase)].append((open_.pop(), self._now()))

    def _param_done(self, name: str) -> None:
        self.param_ends[name] = self._now()

    def _s(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def collect(self) -> dict[tuple[str, str], float]:
        """This step's seconds per (row, phase); clears the marks. A backward whose weight
        gradients were accumulated after its hook fired runs to that accumulation."""
        if self.cuda:
            self.torch.cuda.synchronize()
        out: dict[tuple[str, str], float] = {}
        for key, spans in self.spans.items():
            t = sum(self._s(a, b) for a, b in spans)
            end = self.param_ends.get(key[0])
            if key[1] == "backward" and end is not None:
                t += max(self._s(spans[-1][1], end), 0.0)
            out[key] = t
        self.starts.clear()
        self.spans.clear()
        self.param_ends.clear()
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


#: why a module's backward cannot be hooked: its forward code changes a hooked module's output
#: in place (``y += shortcut``), which autograd forbids on a backward hook's output
INPLACE_NOTE = ("per-layer backward not measured: the module changes a layer's output in "
                "place (e.g. y += x), which backward hooks forbid; forward per layer only")


def measure_layers(s: Subject, batch: int, device: str = "cpu", repeats: int = 5,
                   warmup: int = 1) -> tuple[dict[tuple[str, str], Repeats], str]:
    """Per-row forward and backward times in s from hooked steps (module docstring), and a
    note: '' or :data:`INPLACE_NOTE` when the module's own in-place code leaves forward
    hooks only (said, never silent)."""
    try:
        return _hooked(s, batch, device, repeats, warmup, backward=True), ""
    except RuntimeError as e:
        if "BackwardHookFunction" not in str(e):
            raise
    return _hooked(s, batch, device, repeats, warmup, backward=False), INPLACE_NOTE


def _hooked(s: Subject, batch: int, device: str, repeats: int, warmup: int,
            backward: bool) -> dict[tuple[str, str], Repeats]:
    clock = _LayerClock(s, device, backward)
    try:
        step = _stepper(s, batch, device)
        samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        with warnings.catch_warnings():  # the first layer's hook: see _LayerClock
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(max(warmup, 1)):
                step()
                clock.collect()
            for _ in range(repeats):
                step()
                for k, v in clock.collect().items():
                    samples[k].append(v)
    finally:
        clock.remove()
    return {k: Repeats(v) for k, v in samples.items() if len(v) == repeats}


def device_info(device: str, threads: int) -> str:
    """The framework's provenance, 'name=value' separated by ';' (appended to the rows'
    ``versions``): torch and its build, threads, TF32 and cuDNN settings, and on a GPU its
    name, driver, clocks and memory."""
    import torch  # optional peer (the peers extra), imported only when measured

    out = [f"framework=torch-{torch.__version__}", f"torch_threads={threads}",
           f"tf32_matmul={torch.backends.cuda.matmul.allow_tf32}",
           f"tf32_cudnn={torch.backends.cudnn.allow_tf32}",
           f"cudnn_benchmark={torch.backends.cudnn.benchmark}"]
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        out += [f"device={p.name}", f"cuda={torch.version.cuda}",
                f"cudnn={torch.backends.cudnn.version()}", f"sm_count={p.multi_processor_count}",
                f"memory_bytes={p.total_memory}"]
        out += _nvidia_smi()
    else:
        out.append("device=cpu")
    return ";".join(out)


def _nvidia_smi() -> list[str]:
    """Driver and clocks from nvidia-smi, where it runs ([] elsewhere)."""
    q = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if r.returncode != 0 or not r.stdout.strip():
        return []
    vals = [v.strip() for v in r.stdout.splitlines()[0].split(",")]
    names = ["driver", "sm_clock_mhz", "sm_clock_max_mhz", "mem_clock_mhz", "power_limit_w"]
    return [f"{n}={v}" for n, v in zip(names, vals)]


def matmul_peak_flops(device: str, n: int = 2048, repeats: int = 5) -> float:
    """FP32 FLOP/s of torch's n x n matmul (2 n^3 FLOP, TF32 off): the best of ``repeats``."""
    import torch  # optional peer (the peers extra), imported only when measured

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        a @ b
        _sync(device)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2.0 * n ** 3 / best
