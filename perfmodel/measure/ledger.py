"""The layer table of a user's own network, from its PyTorch code or an ONNX file.

``perfmodel ledger MODEL`` writes what ``workload.layers`` reads: one row per layer in forward
order with its parameters and forward FLOP per sample, plus the bytes of its fp32 gradient and
its place in backward (the last layer's gradient is ready first). MODEL is either
``package.module:function`` (a callable returning a ``torch.nn.Module``, e.g.
``torchvision.models:resnet50``), traced with ``torch.fx`` and run once at batch 1 for the
shapes, or a ``.onnx`` file, whose shapes come from ONNX shape inference.

Conventions are the zoo's (:mod:`kernels.zoo`), so a traced torchvision network gives the zoo's
ledger: 2 FLOP per multiply-add; convolutions count every tap (padded ones too) and their bias
add; fully connected layers 2 in out (+ out with a bias); per element of the output, batch
normalization 8 (other normalizations are counted as it), ReLU 1, LeakyReLU 2, dropout 1, a
residual add 1; max pooling k^2 - 1 per output element, average pooling k^2, adaptive average
pooling one per input and one per output element (none to its own size). Reshapes, concatenations and indexing are
free. Any other operation is counted as 0 FLOP and named in :attr:`Ledger.uncounted`; a module
with parameters that is not understood is an error, since its gradient bytes would be lost.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..ui import UserError

COLUMNS = ("layer", "kind", "params", "forward_flop", "gradient_bytes", "backward_order")


@dataclass
class Row:
    """One layer: ``params`` elements, ``forward_flop`` per sample."""

    layer: str
    kind: str
    params: int
    forward_flop: float


@dataclass
class Ledger:
    """The rows in forward order, and what was counted as free without being understood."""

    source: str
    input_shape: tuple[int, ...]
    rows: list[Row] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def forward_flop(self) -> float:
        return sum(r.forward_flop for r in self.rows)

    def csv_text(self) -> str:
        """The table as CSV (``workload.layers`` reads layer, params and forward_flop)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        with_params = [i for i, r in enumerate(self.rows) if r.params]
        order = {i: k for k, i in enumerate(reversed(with_params))}
        for i, r in enumerate(self.rows):
            w.writerow([r.layer, r.kind, r.params, f"{r.forward_flop:.0f}", 4 * r.params,
                        order.get(i, "")])
        return out.getvalue()


def build(model: str, input_shape: tuple[int, ...]) -> Ledger:
    """The ledger of ``model`` (``package.module:function`` or a ``.onnx`` path) for one sample
    of ``input_shape`` (without the batch dimension)."""
    if model.endswith(".onnx"):
        return onnx_ledger(model, input_shape)
    if ":" not in model:
        raise UserError(f"MODEL={model!r}: give package.module:function (a callable that "
                        "returns a torch.nn.Module) or a .onnx file")
    return torch_ledger(model, input_shape)


def _numel(shape) -> int:
    return int(math.prod(int(d) for d in shape))


def _pool_k(k, dims: int = 2) -> int:
    """Taps of a pooling window: an int kernel is k in each of ``dims`` dimensions."""
    return k ** dims if isinstance(k, int) else _numel(k)


# --- PyTorch ---------------------------------------------------------------------------------

def load_module(target: str) -> Any:
    """Call ``package.module:function`` and return what it builds (a UserError if it cannot be
    imported or has no such function)."""
    mod_name, _, fn_name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except ModuleNotFoundError as e:
        raise UserError(f"MODEL={target!r}: cannot import {e.name!r}") from None
    except AttributeError:
        raise UserError(f"MODEL={target!r}: {mod_name} has no {fn_name!r}") from None
    return fn()


def torch_ledger(target: str, input_shape: tuple[int, ...]) -> Ledger:
    """Trace ``target()`` with torch.fx and count each node (module docstring)."""
    try:
        import torch  # optional peer (the 'ledger' extra): heavy, only for this command
    except ModuleNotFoundError:
        raise UserError("perfmodel ledger of a PyTorch module needs torch: pip install "
                        "'perfmodel[ledger]'") from None
    model = load_module(target)
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"MODEL={target!r} returned {type(model).__name__}, not a "
                        "torch.nn.Module")
    return module_ledger(model, input_shape, target)


def module_ledger(model: Any, input_shape: tuple[int, ...], target: str = "module") -> Ledger:
    """The ledger of a ``torch.nn.Module`` (traced with torch.fx; ``target`` names it in
    errors) for one sample of ``input_shape``."""
    import torch  # optional peer (the 'ledger' or 'peers' extra): only for a torch module
    from torch.fx import symbolic_trace  # the same peer
    from torch.fx.passes.shape_prop import ShapeProp  # the same peer

    try:
        gm = symbolic_trace(model)
    except Exception as e:  # torch.fx raises many kinds on code it cannot trace
        raise UserError(f"MODEL={target!r}: torch.fx cannot trace it ({e}); export it to "
                        "ONNX and give the .onnx file") from None
    gm.eval()  # shapes only: batch statistics of one sample would fail
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    except Exception as e:  # a wrong --input shape surfaces as the model's own error
        raise UserError(f"--input {','.join(map(str, input_shape))}: the model does not run "
                        f"on it ({e})") from None
    nn = torch.nn
    led = Ledger(target, tuple(input_shape))
    free_fns = {operator.getitem, torch.flatten, torch.cat, getattr, torch.reshape}
    free_methods = {"view", "reshape", "flatten", "size", "contiguous", "permute",
                    "transpose", "squeeze", "unsqueeze", "chunk", "split"}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        out = _numel(meta.shape[1:]) if hasattr(meta, "shape") else 0
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            params = sum(p.numel() for p in m.parameters())
            flop = _torch_module_flop(nn, m, node, out)
            if flop is None:
                if params:
                    raise UserError(f"MODEL={target!r}: layer {node.target!r} "
                                    f"({type(m).__name__}) has {params} parameters and is "
                                    "not understood: write its row of the layer table by "
                                    "hand (docs/scenario.md)")
                led.uncounted.append(f"{node.target} ({type(m).__name__})")
                flop = 0.0
            led.rows.append(Row(str(node.target), type(m).__name__.lower(), params, flop))
        elif node.op in ("call_function", "call_method"):
            t = node.target
            name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
            tensors = [a for a in node.args if hasattr(a, "op")]
            if name in ("add", "iadd", "add_") and len(tensors) == 2:
                led.rows.append(Row(node.name, "add", 0, float(out)))
            elif name in ("relu", "relu_"):
                led.rows.append(Row(node.name, "relu", 0, float(out)))
            elif t in free_fns or name in free_methods:
                continue
            else:
                led.uncounted.append(f"{node.name} ({name})")
        elif node.op == "get_attr":
            raise UserError(f"MODEL={target!r}: {node.target!r} reads a parameter outside a "
                            "module; write the layer table by hand")
    return led


def _torch_module_flop(nn, m, node, out: int) -> float | None:
    """Forward FLOP per sample of a leaf module (None: not understood)."""
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        taps = _numel(m.weight.shape[1:])  # (c_in / groups) x kernel
        return 2.0 * out * taps + (out if m.bias is not None else 0)
    if isinstance(m, nn.Linear):
        return 2.0 * out * m.in_features + (out if m.bias is not None else 0)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm,
                      nn.GroupNorm)):
        return 8.0 * out
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Dropout, nn.Dropout2d)):
        return float(out)
    if isinstance(m, nn.LeakyReLU):
        return 2.0 * out
    dims = {nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.MaxPool3d: 3, nn.AvgPool3d: 3}.get(type(m), 2)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return float(out * (_pool_k(m.kernel_size, dims) - 1))
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        return float(out * _pool_k(m.kernel_size, dims))
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        src = _numel(node.args[0].meta.get("tensor_meta").shape[1:])
        return 0.0 if src == out else float(src + out)  # to its own size: a no-op
    if isinstance(m, (nn.Identity, nn.Flatten)):
        return 0.0
    return None


# --- ONNX ------------------------------------------------------------------------------------

def onnx_ledger(path: str, input_shape: tuple[int, ...]) -> Ledger:
    """Count an ONNX graph's nodes (module docstring) with shapes from shape inference at
    batch 1."""
    try:
        import onnx  # optional peer (the 'ledger' extra), only for this command
        from onnx import shape_inference  # the same peer
    except ModuleNotFoundError:
        raise UserError("perfmodel ledger of an ONNX file needs onnx: pip install "
                        "'perfmodel[ledger]'") from None
    if not Path(path).is_file():
        raise UserError(f"MODEL={path!r}: no such file")
    try:
        model = onnx.load(path)
    except Exception as e:  # onnx raises DecodeError and others on a bad file
        raise UserError(f"MODEL={path!r}: not an ONNX model ({e})") from None
    g = model.graph
    init = {t.name: tuple(t.dims) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init]
    if len(inputs) != 1:
        raise UserError(f"MODEL={path!r}: {len(inputs)} graph inputs; the ledger takes one")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape) + 1:
        raise UserError(f"--input {','.join(map(str, input_shape))}: the model's input has "
                        f"{len(dims) - 1} dimensions besides the batch")
    for d, v in zip(dims, (1, *input_shape)):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    try:
        g = shape_inference.infer_shapes(model, strict_mode=True).graph
    except Exception as e:  # shape inference errors name the node
        raise UserError(f"MODEL={path!r}: shape inference failed ({e})") from None
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in (*g.value_info, *g.output, *g.input)}
    led = Ledger(path, tuple(input_shape))
    for k, n in enumerate(g.node):
        name = n.name or f"{n.op_type.lower()}{k}"
        y = shapes.get(n.output[0])
        out = _numel(y[1:]) if y else 0
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        params = sum(_numel(init[i]) for i in n.input if i in init)
        count = _ONNX.get(n.op_type)
        if count is None:
            if params:
                raise UserError(f"MODEL={path!r}: node {name!r} ({n.op_type}) has "
                                f"{params} parameters and is not understood")
            if n.op_type not in _ONNX_FREE:
                led.uncounted.append(f"{name} ({n.op_type})")
            continue
        if n.op_type == "BatchNormalization":  # running mean and variance are not trained
            params = sum(_numel(init[i]) for i in n.input[1:3] if i in init)
        src = shapes.get(n.input[0])
        led.rows.append(Row(name, n.op_type.lower(), params,
                            float(count(n, attrs, out, init, src))))
    return led


def _onnx_conv(n, a, out, init, src) -> float:
    w = init.get(n.input[1])
    if w is None:
        raise UserError(f"ONNX node {n.name!r}: a Conv whose weight is not an initializer")
    return 2.0 * out * _numel(w[1:]) + (out if len(n.input) > 2 and n.input[2] else 0)


def _onnx_gemm(n, a, out, init, src) -> float:
    b = init.get(n.input[1])
    k = (b[1] if a.get("transB", 0) else b[0]) if b is not None else src[-1]
    return 2.0 * out * k + (out if len(n.input) > 2 and n.input[2] else 0)


def _onnx_add(n, a, out, init, src) -> float:
    return float(out)


_ONNX: dict[str, Callable[..., float]] = {
    "Conv": _onnx_conv, "Gemm": _onnx_gemm, "MatMul": _onnx_gemm,
    "BatchNormalization": lambda n, a, out, i, s: 8.0 * out,
    "Relu": lambda n, a, out, i, s: float(out),
    "LeakyRelu": lambda n, a, out, i, s: 2.0 * out,
    "Dropout": lambda n, a, out, i, s: float(out),
    "Add": _onnx_add,
    "MaxPool": lambda n, a, out, i, s: float(out * (_numel(a["kernel_shape"]) - 1)),
    "AveragePool": lambda n, a, out, i, s: float(out * _numel(a["kernel_shape"])),
    "GlobalAveragePool": lambda n, a, out, i, s: float(_numel(s[1:]) + out),
}
_ONNX_FREE = {"Flatten", "Reshape", "Concat", "Identity", "Shape", "Gather", "Constant",
              "Squeeze", "Unsqueeze", "Transpose", "Slice", "Cast"}
