"""One training step as a timeline: per-layer backward and per-bucket communication.

Backward produces the gradients in reverse layer order; a parameter blob's gradient is ready
when its layer's backward ends. The exchange starts per message as the libraries do it:

* ``fused``: one buffer of every gradient, sent when the last one is ready, at the end of
  backward (nothing to overlap);
* ``per-blob``: one message per blob, each as soon as it is ready (Intel Caffe's multinode
  code starts a layer's exchange in its ``on_backward_finished`` hook: reference, "Further
  inputs");
* ``bucketed``: consecutive blobs in backward order gathered into buckets of at least
  ``bucket_bytes``, each sent when its last gradient is ready (PyTorch DDP's gradient buckets,
  ``bucket_cap_mb`` = 25 MiB by default; Horovod's fusion buffer works alike at its cycle
  boundaries).

Messages go one at a time over the network, in the order they became ready: message k starts
at max(ready_k, end_{k-1}) and takes c_k (the collective's cost for its bytes). The exposed
communication is what lies past the end of backward, max(0, end_K - t_compute); without
overlap every message waits for the end of backward and all of it is exposed. Hence, as the
tests check: exposed <= the sum of the c_k; with an instant backward, exposed = that sum; one
bucket for the whole model is the fused case.

Everything is vectorized over configurations (the compute time and the collectives' costs are
arrays); the loop runs over the messages of one model.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MESSAGES = ("fused", "per-blob", "bucketed")
DDP_BUCKET_BYTES = 25 * 2**20  # torch.nn.parallel.DistributedDataParallel bucket_cap_mb=25


def ready_fractions(forward_flop, backward_flop, owner) -> np.ndarray:
    """For each blob, the fraction of a step's compute after which its gradient is ready.

    ``forward_flop`` and ``backward_flop``: per layer, forward order; ``owner``: for each blob
    (forward order), the index of its layer. The forward pass takes the first share of the
    step; backward then runs from the last layer to the first."""
    f = np.asarray(forward_flop, float)
    b = np.asarray(backward_flop, float)
    total = f.sum() + b.sum()
    if total <= 0:
        return np.ones(len(owner))
    done = f.sum() + np.cumsum(b[::-1])[::-1]  # when layer i's backward ends
    return np.asarray(done, float)[np.asarray(owner, int)] / total


def messages(blob_bytes, ready, kind: str, bucket_bytes: float = DDP_BUCKET_BYTES
             ) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, ready fraction) of each message in the order they are sent."""
    blob_bytes = np.asarray(blob_bytes, float)
    ready = np.ones(len(blob_bytes)) if ready is None else np.asarray(ready, float)
    if kind == "fused" or len(blob_bytes) == 0:  # once every gradient is ready
        return np.array([blob_bytes.sum()]), np.array([ready.max() if len(ready) else 1.0])
    order = np.argsort(ready, kind="stable")  # backward order: the last layer's first
    nb, rd = blob_bytes[order], ready[order]
    if kind == "per-blob":
        return nb, rd
    if kind != "bucketed":
        raise ValueError(f"messages={kind!r} is not one of {', '.join(MESSAGES)}")
    sizes, readies, acc, last = [], [], 0.0, 1.0
    for size, r in zip(nb, rd):
        acc += size
        last = r
        if acc >= bucket_bytes:
            sizes.append(acc)
            readies.append(last)
            acc = 0.0
    if acc > 0:
        sizes.append(acc)
        readies.append(last)
    return np.array(sizes), np.array(readies)


def exposed(t_compute, cost: Callable[[np.ndarray, float], np.ndarray], group_size,
            msg_bytes, msg_ready, overlap: bool) -> tuple[np.ndarray, np.ndarray]:
    """(exposed communication, total communication) in seconds per step, arrays over the
    configurations. ``cost(p, nbytes)`` is one message's collective time among ``p`` workers;
    it is evaluated once per distinct group size (a sweep has few) and gathered."""
    t_c = np.asarray(t_compute, float)
    sizes, inverse = np.unique(np.asarray(group_size, float), return_inverse=True)
    inverse = inverse.reshape(np.shape(group_size))
    per_msg = [cost(sizes, float(nb)) for nb in msg_bytes]  # each over the distinct sizes
    total = np.sum(per_msg, axis=0)[inverse] if per_msg else np.zeros_like(t_c)
    total = np.broadcast_to(total, t_c.shape).astype(float)
    if not overlap:
        return total, total
    end = np.zeros_like(t_c)
    for c, r in zip(per_msg, msg_ready):
        np.maximum(end, r * t_c, out=end)
        end += c[inverse]
    return np.maximum(end - t_c, 0.0), total


def schedule(t_compute: float, costs, msg_bytes, msg_ready, overlap: bool) -> list[dict]:
    """One configuration's timeline: per message, its bytes, when its gradient was ready,
    when it started and ended (s from the step's start)."""
    rows, end = [], 0.0 if overlap else float(t_compute)
    for k, (nb, r, c) in enumerate(zip(msg_bytes, msg_ready, costs)):
        ready = float(r) * t_compute
        start = max(end, ready) if overlap else end
        end = start + float(c)
        rows.append(dict(message=k, bytes=float(nb), ready_s=ready, start_s=start, end_s=end,
                         exposed_s=max(0.0, end - max(start, float(t_compute)))))
    return rows
