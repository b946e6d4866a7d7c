"""``perfmodel ledger``: the layer table of the user's own network (PyTorch or ONNX)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..measure import ledger as L
from ..results import atomic_write_text
from ..ui import UserError


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the sample's dimensions as "
                                         "integers, e.g. 3,224,224") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every dimension must be >= 1")
    return dims


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="package.module:function returning a torch.nn.Module (e.g. "
                        "torchvision.models:resnet50), or a .onnx file")
    p.add_argument("-o", "--output", default=None, metavar="CSV",
                   help="where to write the layer table (default: standard output); "
                        "written atomically")
    p.add_argument("--input", type=_shape, default=(3, 224, 224), metavar="C,H,W",
                   help="one sample's shape without the batch (default 3,224,224)")
    p.add_argument("--json", action="store_true",
                   help="a JSON summary on stdout (rows, params, FLOP, uncounted operations)")


def run_ledger(args: argparse.Namespace) -> int:
    led = L.build(args.model, args.input)
    if not led.rows:
        raise UserError(f"MODEL={args.model!r}: no layer was found")
    text = led.csv_text()
    if args.output:
        atomic_write_text(Path(args.output), text)
    elif not args.json:
        sys.stdout.write(text)
    summary = dict(model=args.model, input_shape=list(led.input_shape), layers=len(led.rows),
                   params=led.params, forward_flop_per_sample=led.forward_flop,
                   train_flop_per_sample_approx=3 * led.forward_flop,
                   uncounted=led.uncounted, output=args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    where = f" -> {args.output}" if args.output else ""
    print(f"{args.model}: {len(led.rows)} layers, {led.params:,} parameters "
          f"({4 * led.params / 1e6:.1f} MB of fp32 gradients), {led.forward_flop / 1e9:.4g} "
          f"GFLOP forward per sample (2 per multiply-add){where}", file=sys.stderr)
    if led.uncounted:
        print(f"counted as 0 FLOP (not understood): {', '.join(led.uncounted)}",
              file=sys.stderr)
    if args.output:
        print(f"use it: [workload] layers = \"{args.output}\"", file=sys.stderr)
    return 0
