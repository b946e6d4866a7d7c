"""A scenario's workload as the model sees it: FLOP per sample, gradient blobs and when each
blob is ready in backward, from a zoo network, the project's nets, a CSV layer table or bare
parameters (FLOP: 2 per multiply-add, :mod:`kernels.base`'s ledger; bytes: fp32)."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any

import numpy as np

import kernels
from kernels.zoo import ZOO, from_table

from ..ui import UserError
from .timeline import ready_fractions


def spec_ready(spec) -> tuple[float, ...]:
    """Each blob's ready fraction of the step (timeline.ready_fractions) from a zoo Spec."""
    rows = spec.rows
    return tuple(ready_fractions([r.forward_flop for r in rows], [r.backward_flop for r in rows],
                                 spec.blob_rows))


def layer_table(path: str, source: str = "scenario"
                 ) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """(training FLOP per sample, blob bytes, blob ready fractions) of a CSV layer table
    (kernels.zoo.from_table)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UserError(f"{source}: workload.layers={path!r}: {e.strerror}") from None
    need = {"layer", "params", "forward_flop"}
    if not rows or not need <= set(rows[0]):
        raise UserError(f"{source}: workload.layers={path!r}: needs a header with layer, "
                        "params, forward_flop and one row per layer")
    for i, r in enumerate(rows, start=2):
        try:
            float(r["params"]), float(r["forward_flop"])
        except (TypeError, ValueError):
            raise UserError(f"{source}: workload.layers={path!r} line {i}: params="
                            f"{r['params']!r}, forward_flop={r['forward_flop']!r} must be "
                            "numbers") from None
    try:
        spec = from_table(rows, name=Path(path).stem)
    except ValueError as e:
        raise UserError(f"{source}: workload.layers={path!r}: {e}") from None
    return (float(spec.ledger().train_flop), tuple(4.0 * b for b in spec.blobs),
            spec_ready(spec))


def workload_ledger(w: dict) -> tuple[float, np.ndarray]:
    """(FLOP per sample of a training step, parameter blob sizes in bytes)."""
    if w["layers"] is not None:
        flop, blobs, _ = layer_table(w["layers"])
        return flop, np.array(blobs)
    if w["net"] is None:
        return float(w["flop_per_sample"].nominal), np.array([4.0 * w["params"]])
    flop, blobs, _, _ = net_ledger(w["net"], w["image_size"], w["image_width"], w["filters"])
    return flop, np.array(blobs)


SPREAD_BLOBS = 64  # pseudo-layers of a workload given as bare params, when it overlaps


def spread_blobs(param_bytes: float, k: int = SPREAD_BLOBS) -> tuple[np.ndarray, np.ndarray]:
    """(blob bytes, ready fractions) of a workload known only by its parameter bytes, for a
    timeline that overlaps: k equal blobs whose gradients are ready evenly through backward
    (forward the first third of the compute, backward twice forward, as for a layer table).
    An ASSUMPTION, stated in the README: real networks hold more parameters in late layers,
    whose gradients come first, so this hides less than they do."""
    i = np.arange(k)  # forward order: the last blob is ready first
    return np.full(k, param_bytes / k), 1.0 / 3.0 + (2.0 / 3.0) * (k - i) / k


def workload_blob_ready(w: dict) -> np.ndarray | None:
    """When each blob's gradient is ready, as a fraction of a step's compute (the timeline's
    input); None for a workload given as bare params (one blob, ready at the end)."""
    if w["layers"] is not None:
        return np.array(layer_table(w["layers"])[2])
    if w["net"] is None:
        return None
    return np.array(net_ledger(w["net"], w["image_size"], w["image_width"], w["filters"])[3])


@functools.lru_cache(maxsize=16)
def net_ledger(net: str, image_size: int | None, image_width: int | None,
                filters: int | None = None
                ) -> tuple[float, tuple[float, ...], str, tuple[float, ...]]:
    """(training FLOP per sample, parameter blob bytes, the net's name, blob ready fractions)
    of a network of the zoo or of the project's two nets, built from its layer definitions."""
    if net in ZOO:  # a common network: its ledger from the layer definitions, no weights
        try:
            spec = ZOO[net](**({} if image_size is None else {"image_size": image_size}))
        except ValueError as e:
            raise UserError(f"workload.image_size: {e}") from None
        return (float(spec.ledger().train_flop), tuple(4.0 * b for b in spec.blobs), net,
                spec_ready(spec))
    size: Any = image_size
    if image_width is not None:
        if net == "hep" and image_width != image_size:
            raise UserError("workload.image_width: the HEP net takes square images "
                            f"(image_size={image_size}, image_width={image_width})")
        size = (image_size or 768, image_width) if net == "climate" else image_size
    kw: dict[str, Any] = {} if size is None else {"image_size": size}
    if filters is not None:
        kw["filters"] = filters
    try:
        model = kernels.NETS[net](**kw)
    except ValueError as e:
        raise UserError(f"workload.image_size: {e}") from None
    led = model.ledger(1)
    blobs = tuple(4.0 * wt.size for _, l in model.named_layers() for _, wt, _ in l.params())
    row = {r.name: i for i, r in enumerate(led.rows)}
    owner = [row[name] for name, l in model.named_layers() for _ in l.params()]
    ready = tuple(ready_fractions([r.forward_flop for r in led.rows],
                                  [r.backward_flop for r in led.rows], owner))
    return float(led.train_flop), blobs, str(getattr(model, "name", net)), ready
