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
  ``bucket_cap_mb`` = 25 MiB by default).
* ``horovod``: Horovod's background thread wakes every ``cycle_s`` and sends, one fused
  buffer after another, every gradient ready by then, in buffers of at most ``fusion_bytes``
  (docs/tensor-fusion.rst; defaults since v0.21, PR #2468: a 1 ms cycle and 128 MiB, before
  that 5 ms and 64 MiB). A cycle starts ``cycle_s`` after the previous one or when its sends
  end, whichever is later (the loop sleeps out the rest of the cycle); cycles start with the
  step. Which gradients share a buffer depends on the compute time, so this case runs its own
  recurrence over the blobs, vectorized over configurations (:func:`horovod`).

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

MESSAGES = ("fused", "per-blob", "bucketed", "horovod")
DDP_BUCKET_BYTES = 25 * 2**20  # torch.nn.parallel.DistributedDataParallel bucket_cap_mb=25
HOROVOD_CYCLE_S = 1e-3          # HOROVOD_CYCLE_TIME, 1 ms since v0.21 (5 ms before)
HOROVOD_FUSION_BYTES = 128 * 2**20  # HOROVOD_FUSION_THRESHOLD, 128 MiB since v0.21 (64 before)


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
    if kind == "horovod":  # its buffers depend on the compute time: see horovod()
        raise ValueError("messages='horovod' has no fixed message list: use timeline.horovod")
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


CHUNK = 1 << 15  # configurations per pass of the Horovod recurrence


def horovod(t_compute, cost: Callable[[np.ndarray, np.ndarray], np.ndarray], group_size,
            blob_bytes, blob_ready, overlap: bool, cycle_s: float = HOROVOD_CYCLE_S,
            fusion_bytes: float = HOROVOD_FUSION_BYTES, rows: list | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(exposed communication, total communication) in s per step under Horovod's cycles,
    arrays over the configurations. ``cost(p, nbytes)`` takes arrays elementwise. Without
    ``overlap`` every gradient counts as ready when compute ends. ``rows``: a list to which
    the schedule of the first configuration is appended (as :func:`schedule` gives it).

    Blob by blob in backward order: a gradient joins the open buffer if it was ready by the
    buffer's cycle and fits; otherwise the buffer is sent (after the network's previous send)
    and the gradient opens a new one, in the same cycle when only the size stopped it, else in
    the first cycle that starts after it is ready."""
    t_c = np.asarray(t_compute, float)
    p = np.broadcast_to(np.asarray(group_size, float), t_c.shape)
    size = np.asarray(blob_bytes, float)
    ready = np.ones(len(size)) if blob_ready is None else np.asarray(blob_ready, float)
    order = np.argsort(ready, kind="stable")
    size, ready = size[order], (ready[order] if overlap else np.ones(len(size)))
    if t_c.size > CHUNK and rows is None:  # chunks that stay in cache: ~2x faster at 10^6
        flat_t, flat_p = t_c.reshape(-1), p.reshape(-1)
        exp, tot = np.empty(flat_t.size), np.empty(flat_t.size)
        for i in range(0, flat_t.size, CHUNK):
            j = slice(i, i + CHUNK)
            exp[j], tot[j] = _horovod(flat_t[j], flat_p[j], cost, size, ready, cycle_s,
                                      fusion_bytes, None)
        return exp.reshape(t_c.shape), tot.reshape(t_c.shape)
    return _horovod(t_c, p, cost, size, ready, cycle_s, fusion_bytes, rows)



def _horovod(t_c, p, cost, size, ready, cycle_s, fusion_bytes, rows):
    z = np.zeros_like(t_c)
    tick, acc, end, total, first = z.copy(), z.copy(), z.copy(), z.copy(), z.copy()

    def flush(mask: np.ndarray) -> None:
        send = mask & (acc > 0)
        if not send.any():
            return
        c = np.zeros(t_c.shape)
        c[send] = cost(p[send], acc[send])  # only the buffers sent now
        start = np.maximum(end, tick)
        if rows is not None and send.flat[0]:
            rows.append(dict(message=len(rows), bytes=float(acc.flat[0]),
                             ready_s=float(first.flat[0]), start_s=float(start.flat[0]),
                             end_s=float(start.flat[0] + c.flat[0])))
        end[...] = np.where(send, start + c, end)
        total[...] += c
        acc[...] = np.where(send, 0.0, acc)

    for k, (nb, r) in enumerate(zip(size, ready)):
        r_t = r * t_c
        late = (acc > 0) & (r_t > tick)
        full = (acc > 0) & ~late & (acc + nb > fusion_bytes)
        flush(late | full)
        if k == 0:  # the first cycle at or after the first gradient
            new_tick = cycle_s * np.ceil(r_t / cycle_s - 1e-12)
        else:  # cycles go on every cycle_s, or when the sends end if later
            nxt = np.maximum(tick + cycle_s, end)
            new_tick = nxt + cycle_s * np.ceil(np.maximum(r_t - nxt, 0.0) / cycle_s - 1e-12)
        opens = (k == 0) | late
        tick[...] = np.where(opens, new_tick, tick)
        first[...] = np.where(acc == 0, r_t, first)
        acc[...] += nb
    flush(np.ones(t_c.shape, bool))
    for row in rows or []:
        row["exposed_s"] = max(0.0, row["end_s"] - max(row["start_s"], float(t_c.flat[0])))
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
