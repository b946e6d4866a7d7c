"""Data-parallel training across MPI ranks: sync, parameter-server (async) and hybrid.

Rank layout: the last ``param_servers`` ranks are servers; the others are workers, split into
``groups`` synchronous groups of consecutive ranks (``Comm.Split``); rank 0 of each group is
its root. Parameters are sharded round-robin by blob (weight or bias of a layer): blob k lives
on server k mod S, as in Intel Caffe's multinode code.

* sync (no servers): every worker computes on its batch, gradients are averaged with
  ``Allreduce`` (one fused buffer, or one call per blob) and every worker applies the same SGD
  update, so all weights stay identical.
* hybrid: inside a group, ``Reduce`` to the root (or ``Allreduce``); the root sends each
  server its shard of the averaged gradient and receives the shard's new weights (non-blocking
  ``Isend``/``Irecv``, one exchange per server), then ``Bcast``s the weights in its group.
* async: hybrid with one worker per group.

Servers apply updates in arrival order (``Probe`` on any source), with SGD momentum and weight
decay kept per shard, and answer with the shard's weights and its version (updates applied so
far). A gradient's staleness is the number of updates its shard received between the version
the root computed on and the update that applies it: measured, not assumed.

Per iteration and worker: I/O wait, compute (forward+backward), injected straggler delay (spent
busy, :func:`_busy`), wait
(a barrier before the collective: time spent waiting for slower members), collective, parameter
server round trip, and the loss; timings with ``MPI.Wtime``.

Convergence (``eval_every``): every K timed steps all workers meet at a barrier, worker 0
computes the loss of its current weights (in async and hybrid, the servers' weights it pulled
last) on the held-out events of ``DATA/val.h5``, smooths it (EMA), and broadcasts whether the
target is reached. The pause is taken off every rank's clock (``elapsed_s``, the run's wall
time): time to target counts training only. It also synchronizes asynchronous groups once per K
steps, which bounds their staleness; keep K well above the number of groups. A run that hits
``max_steps`` first is censored: its updates bound the updates to target from below.

Noise scale (``noise_scale``): per step, |G_small|^2 from each worker's gradient (batch b) and
|G_big|^2 from the group's average (batch n b); a worker alone in its group splits its batch
in two halves instead (the same gradient, in two passes). Worker 0 turns them into McCandlish
et al.'s unbiased |G|^2 and tr(Sigma) (:func:`perfmodel.model.convergence.noise_terms`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import kernels
from kernels.optim import sgd_update

from ..model.convergence import noise_terms
from .config import HarnessConfig
from .data import ShardReader, load_held_out

TAG_GRAD, TAG_WEIGHTS, TAG_DONE = 11, 12, 13


class Blobs:
    """The parameter blobs of a net and their packing into flat float32 buffers."""

    def __init__(self, net: kernels.Net) -> None:
        self.slots = [(layer, p) for _, layer in net.named_layers() for p, _, _ in layer.params()]
        self.shapes = [getattr(l, p).shape for l, p in self.slots]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.total = int(self.offsets[-1])

    def bind_grads(self) -> np.ndarray:
        """Make every layer's gradients views of one flat float32 buffer (layers write their
        gradients in place), so collectives reduce it with no packing; returns the buffer."""
        flat = np.zeros(self.total, np.float32)
        for (l, p), o, n, sh in zip(self.slots, self.offsets, self.sizes, self.shapes):
            view = flat[o:o + n].reshape(sh)
            view[...] = getattr(l, "grad_" + p)
            setattr(l, "grad_" + p, view)
        self.grads = flat
        return flat

    def pack_weights(self, buf: np.ndarray) -> np.ndarray:
        for (l, p), o, n in zip(self.slots, self.offsets, self.sizes):
            buf[o:o + n] = getattr(l, p).reshape(-1)
        return buf

    def unpack_weights(self, buf: np.ndarray) -> None:
        for (l, p), o, n, s in zip(self.slots, self.offsets, self.sizes, self.shapes):
            getattr(l, p)[...] = buf[o:o + n].reshape(s)

    def shard(self, servers: int) -> list[np.ndarray]:
        """Flat indices of the parameters each server holds (blob k on server k mod S)."""
        out = []
        for s in range(servers):
            idx = [np.arange(self.offsets[k], self.offsets[k + 1])
                   for k in range(len(self.sizes)) if k % servers == s]
            out.append(np.concatenate(idx) if idx else np.zeros(0, int))
        return out


@dataclass
class Trace:
    """What one rank measured."""

    rank: int
    role: str                      # worker or server
    group: int = -1
    iterations: list[dict] = field(default_factory=list)
    wall_s: float = 0.0            # timed part, from the start barrier to the last step
    io_wait_s: float = 0.0
    staleness: list[int] = field(default_factory=list)
    applied: int = 0               # updates a server applied
    pushed: int = 0                # shard updates a root pushed
    busy_s: float = 0.0            # server time spent applying updates
    evals: list[dict] = field(default_factory=list)   # worker 0: held-out evaluations
    noise: list[dict] = field(default_factory=list)   # worker 0: per-step noise terms
    paused_s: float = 0.0          # evaluation pauses taken off the clock
    target: dict = field(default_factory=dict)        # worker 0: reached, updates, steps, ...


class Watchdog:
    """Ends the whole job (``Abort``) when a rank makes no progress for ``timeout_s``."""

    def __init__(self, comm, timeout_s: float, what: str) -> None:
        self.comm, self.timeout_s, self.what = comm, timeout_s, what
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()

    def beat(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() - self.last > self.timeout_s:
                sys.stderr.write(f"perfmodel harness: rank {self.comm.rank} ({self.what}) made "
                                 f"no progress for {self.timeout_s:g} s: hung, aborting the "
                                 "job\n")
                sys.stderr.flush()
                # give mpiexec's proxy time to forward the line: on a loaded machine the
                # abort killed the job before it did, and the reason was lost
                time.sleep(0.5)
                self.comm.Abort(4)

    def stop(self) -> None:
        self._stop.set()


def build_net(cfg: HarnessConfig) -> kernels.Net:
    kw = dict(image_size=cfg.image_size, seed=cfg.seed, lr=cfg.lr, momentum=cfg.momentum,
              weight_decay=cfg.weight_decay)
    if cfg.net == "hep":
        kw.update(dropout=cfg.dropout, filters=cfg.filters)
    return kernels.NETS[cfg.net](**kw)


def held_out_loss(net: kernels.Net, x: np.ndarray, y, chunk: int = 64) -> tuple[float, float]:
    """(mean loss, accuracy) of ``net`` on held-out events, dropout off; accuracy is NaN for
    nets that do not classify (climate)."""
    net.eval()
    try:
        total, correct = 0.0, 0
        classify = isinstance(net, kernels.Sequential)
        for i in range(0, len(x), chunk):
            xs, ys = x[i:i + chunk], _slice(y, slice(i, i + chunk))
            if classify:
                out = net.forward(xs)
                loss = net.loss.forward(out, ys)
                correct += int((out.argmax(axis=1) == ys).sum())
            else:
                loss = net.loss(net.forward(xs), xs, ys)
            total += loss * len(xs)
        return total / len(x), (correct / len(x) if classify else float("nan"))
    finally:
        net.train()


def _slice(y, sl: slice):
    if isinstance(y, np.ndarray):
        return y[sl]
    return type(y)(**{k: getattr(y, k)[sl] for k in ("obj", "cls", "box", "labelled")})


def _split_gradients(net: kernels.Net, x: np.ndarray, y, blobs: "Blobs", scratch: np.ndarray
                     ) -> tuple[float, float, float]:
    """The gradient of the whole batch from its two halves, for the noise scale; returns
    (loss, mean |G_half|^2, |G_batch|^2). The result in ``blobs.grads`` equals one pass."""
    h = len(x) // 2
    l1 = net.compute_gradients(x[:h], _slice(y, slice(0, h)))
    scratch[...] = blobs.grads
    l2 = net.compute_gradients(x[h:], _slice(y, slice(h, None)))
    g = blobs.grads
    small = 0.5 * (float(np.dot(scratch, scratch)) + float(np.dot(g, g)))
    g += scratch
    g *= np.float32(0.5)
    return 0.5 * (l1 + l2), small, float(np.dot(g, g))


def run(cfg: HarnessConfig, comm, on_eval=None) -> tuple[list[Trace], kernels.Net | None, dict]:
    """Train; returns every rank's trace (on world rank 0; None elsewhere), this rank's net
    (workers) and the layout. ``on_eval(trace)`` is called on world rank 0 after each held-out
    evaluation, while the clock is paused (the harness streams finished rows there)."""
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    size, rank = comm.size, comm.rank
    n_ps = cfg.param_servers
    workers = size - n_ps
    groups = workers if cfg.strategy == "async" else cfg.groups
    per_group = workers // groups
    is_server = rank >= workers
    group = -1 if is_server else rank // per_group
    wcomm = comm.Split(1 if is_server else 0, rank)
    gcomm = comm.Split(MPI.UNDEFINED if is_server else group, rank)
    kernels.set_num_threads(cfg.threads)
    net = build_net(cfg)
    blobs = Blobs(net)
    shards = blobs.shard(n_ps) if n_ps else []
    layout = dict(workers=workers, groups=groups, per_group=per_group, servers=n_ps,
                  param_floats=blobs.total)
    dog = Watchdog(comm, cfg.watchdog_s, "server" if is_server else "worker")
    try:
        if is_server:
            trace = _serve(cfg, comm, net, blobs, shards[rank - workers], groups, dog)
            net = None
        else:
            trace = _work(cfg, comm, wcomm, gcomm, net, blobs, shards, group, per_group,
                          workers, dog, on_eval)
    finally:
        dog.stop()
    traces = comm.gather(trace, root=0)
    return traces, net, layout


def _serve(cfg, comm, net, blobs: Blobs, idx: np.ndarray, roots: int, dog: Watchdog) -> Trace:
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    tr = Trace(rank=comm.rank, role="server")
    flat = blobs.pack_weights(np.empty(blobs.total, np.float32))
    w = flat[idx].copy()
    v = np.zeros_like(w)
    msg = np.empty(len(idx) + 1, np.float32)   # shard + the version it was computed on
    out = np.empty(len(idx) + 1, np.float32)
    version = 0
    done = 0
    status = MPI.Status()
    lr, mom, wd = (np.float32(x) for x in (cfg.lr, cfg.momentum, cfg.weight_decay))
    idle = 0
    while done < roots:
        # poll, then nap: a blocking Probe spins a core, which an oversubscribed node (more
        # ranks than cores, e.g. a server beside its workers) cannot spare
        if not comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            idle += 1
            if idle > 200:
                time.sleep(5e-5)
            continue
        idle = 0
        src, tag = status.Get_source(), status.Get_tag()
        dog.beat()
        if tag == TAG_DONE:
            comm.Recv([np.empty(0, np.float32), MPI.FLOAT], source=src, tag=TAG_DONE)
            done += 1
            continue
        comm.Recv([msg, MPI.FLOAT], source=src, tag=TAG_GRAD)
        t0 = time.perf_counter()
        tr.staleness.append(version - int(msg[-1]))
        lr = np.float32(cfg.lr_at(version))
        sgd_update(w, np.ascontiguousarray(msg[:-1]), v, lr, mom, wd, np.float32(1.0))
        version += 1
        tr.applied += 1
        out[:-1] = w
        out[-1] = version
        tr.busy_s += time.perf_counter() - t0
        comm.Send([out, MPI.FLOAT], dest=src, tag=TAG_WEIGHTS)
    if version >= 2**24:
        raise RuntimeError("versions beyond 2^24 do not survive float32 messages")
    return tr


def _work(cfg, comm, wcomm, gcomm, net, blobs: Blobs, shards, group: int, per_group: int,
          workers: int, dog: Watchdog, on_eval=None) -> Trace:
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    tr = Trace(rank=comm.rank, role="worker", group=group)
    files = sorted(Path(cfg.data).glob("shard_*.h5"))
    reader = ShardReader(files[comm.rank % len(files)], cfg.batch, seed=cfg.seed + comm.rank,
                         shuffle=cfg.shuffle)
    fault = cfg.inject_fault.split(":") if cfg.inject_fault else None
    rng = np.random.default_rng([cfg.seed, comm.rank, 7])
    grads = blobs.bind_grads()
    gbuf = np.empty(blobs.total, np.float32)   # weights broadcast in a group
    rbuf = np.empty(blobs.total, np.float32)   # the group's summed gradient, on its root
    n_ps = len(shards)
    is_root = gcomm.rank == 0
    servers = [workers + s for s in range(n_ps)]
    versions = np.zeros(n_ps, int)
    sendb = [np.empty(len(ix) + 1, np.float32) for ix in shards]
    recvb = [np.empty(len(ix) + 1, np.float32) for ix in shards]
    total = cfg.warmup + cfg.step_cap
    delays = cfg.straggler.draws(total, rng)  # injected per-step delays (s), stratified
    t_start = None
    lead = comm.rank == 0  # worker 0: evaluates, measures the noise scale, streams rows
    held = load_held_out(cfg.data, cfg.eval_samples) if cfg.eval_every and lead else None
    ema = None
    losses: list[float] = []    # training losses since the last evaluation
    noise_split = cfg.noise_scale and per_group == 1
    scratch = np.empty_like(grads) if noise_split else None
    try:
        for it in range(total):
            if it == cfg.warmup:
                wcomm.Barrier()  # all workers start the timed part together
                t_start = MPI.Wtime()
            t_it = MPI.Wtime()
            if fault and int(fault[1]) == comm.rank and int(fault[2]) == it:
                _inject(fault[0], comm.rank, it)
            io0 = reader.wait_s
            x, y = reader.next()
            io = reader.wait_s - io0
            t0 = MPI.Wtime()
            if noise_split:
                loss, small_sq, big_sq = _split_gradients(net, x, y, blobs, scratch)
                b_small, b_big = len(x) / 2, len(x)
            else:
                loss = net.compute_gradients(x, y)
            compute = MPI.Wtime() - t0
            local_sq = float(np.dot(grads, grads)) if cfg.noise_scale and not noise_split \
                else 0.0
            delay = float(delays[it])
            if delay:
                t_s = MPI.Wtime()
                _busy(delay)
                delay = MPI.Wtime() - t_s  # what the rank actually lost
            t0 = MPI.Wtime()
            ps = 0.0
            if n_ps == 0:
                wcomm.Barrier()
                t1 = MPI.Wtime()
                allreduce_gradients(cfg, wcomm, blobs)
                comm_s = MPI.Wtime() - t1
                if cfg.noise_scale and not noise_split:
                    small_sq = wcomm.allreduce(local_sq) / workers
                    big_sq = float(np.dot(grads, grads)) / workers**2
                    b_small, b_big = len(x), len(x) * workers
                net.optimizer.step(lr=cfg.lr_at(it), grad_scale=1.0 / workers)
            else:
                gcomm.Barrier()
                t1 = MPI.Wtime()
                if cfg.group_reduce == "allreduce":
                    gcomm.Allreduce([grads, MPI.FLOAT], [rbuf, MPI.FLOAT], op=MPI.SUM)
                else:
                    gcomm.Reduce([grads, MPI.FLOAT], [rbuf, MPI.FLOAT] if is_root else None,
                                 op=MPI.SUM, root=0)
                comm_s = MPI.Wtime() - t1
                if cfg.noise_scale and not noise_split:
                    small_sq = (gcomm.reduce(local_sq, root=0) or 0.0) / per_group
                    if is_root:
                        big_sq = float(np.dot(rbuf, rbuf)) / per_group**2
                    b_small, b_big = len(x), len(x) * per_group
                if is_root:
                    t2 = MPI.Wtime()
                    scale = np.float32(1.0 / per_group)
                    reqs = []
                    for s in range(n_ps):
                        reqs.append(comm.Irecv([recvb[s], MPI.FLOAT], source=servers[s],
                                               tag=TAG_WEIGHTS))
                    for s, ix in enumerate(shards):
                        np.multiply(rbuf[ix], scale, out=sendb[s][:-1])
                        sendb[s][-1] = versions[s]
                        reqs.append(comm.Isend([sendb[s], MPI.FLOAT], dest=servers[s],
                                               tag=TAG_GRAD))
                    MPI.Request.Waitall(reqs)
                    for s, ix in enumerate(shards):
                        gbuf[ix] = recvb[s][:-1]
                        versions[s] = int(recvb[s][-1])
                    tr.pushed += n_ps
                    ps = MPI.Wtime() - t2
                t3 = MPI.Wtime()
                gcomm.Bcast([gbuf, MPI.FLOAT], root=0)
                blobs.unpack_weights(gbuf)
                comm_s += MPI.Wtime() - t3
            wait = t1 - t0
            end = MPI.Wtime()
            dog.beat()
            tr.iterations.append(dict(step=it, warmup=it < cfg.warmup,
                                      elapsed_s=(end - t_start - tr.paused_s) if t_start
                                      else 0.0,
                                      io_s=io, compute_s=compute, straggle_s=delay,
                                      wait_s=wait, comm_s=comm_s, ps_s=ps,
                                      iteration_s=end - t_it, loss=float(loss)))
            if lead and cfg.noise_scale:
                g2, trace = noise_terms(small_sq, big_sq, b_small, b_big)
                tr.noise.append(dict(step=it, grad_sq=float(g2), trace=float(trace),
                                     b_small=b_small, b_big=b_big))
            losses.append(float(loss))
            timed = it + 1 - cfg.warmup
            if cfg.eval_every and timed > 0 and (timed % cfg.eval_every == 0
                                                 or it == total - 1):
                t_p = MPI.Wtime()
                wcomm.Barrier()
                stop = False
                if lead:
                    updates = int(versions[0]) if n_ps else it + 1
                    vloss, acc = held_out_loss(net, *held)
                    ema = vloss if ema is None else cfg.smooth * vloss + (1 - cfg.smooth) * ema
                    tr.evals.append(dict(step=it, updates=updates, elapsed_s=end - t_start
                                         - tr.paused_s, val_loss=vloss, val_accuracy=acc,
                                         val_loss_smoothed=ema,
                                         train_loss=float(np.mean(losses))))
                    if cfg.target_loss > 0 and ema <= cfg.target_loss:
                        stop = True
                        tr.target = dict(reached=True, updates=updates, steps=it + 1,
                                         elapsed_s=end - t_start - tr.paused_s)
                    elif it == total - 1 and cfg.target_loss > 0:
                        tr.target = dict(reached=False, updates=updates, steps=it + 1,
                                         elapsed_s=end - t_start - tr.paused_s)
                    if on_eval is not None:
                        on_eval(tr)
                losses = []
                stop = wcomm.bcast(stop, root=0)
                tr.paused_s += MPI.Wtime() - t_p
                dog.beat()
                if stop:
                    break
        tr.wall_s = ((MPI.Wtime() - t_start - tr.paused_s) if t_start is not None
                     else 0.0)
    finally:
        tr.io_wait_s = reader.wait_s
        reader.close()
    if n_ps and is_root:
        for srv in servers:
            comm.Send([np.empty(0, np.float32), MPI.FLOAT], dest=srv, tag=TAG_DONE)
    return tr


def _busy(seconds: float) -> None:
    """An injected straggler delay: the rank stays busy (spins) for ``seconds``. A straggler
    is a node that computes slower (OS noise, a slow part), not one that idles; a sleeping
    rank let its core go idle, and on the dev VM the compute after 30 ms of sleep ran 4% slower
    in isolation (interleaved, 180 steps) and 8-20% slower inside the harness, an effect of
    the injection that the straggler model does not describe."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _inject(kind: str, rank: int, step: int) -> None:
    """Fault injection for the tests: a rank that raises, dies or hangs."""
    if kind == "raise":
        raise RuntimeError(f"injected fault on rank {rank} at step {step}")
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    while True:  # hang
        time.sleep(1)


def allreduce_gradients(cfg, wcomm, blobs: Blobs) -> None:
    """Sum the gradients over the workers, in place: one ``Allreduce`` of the flat gradient
    buffer (fused) or one per blob. The 1/N of the mean is applied by the optimizer."""
    from mpi4py import MPI  # importing MPI initialises it: only where a rank runs

    if cfg.allreduce == "per-blob":
        for o, n in zip(blobs.offsets, blobs.sizes):
            wcomm.Allreduce(MPI.IN_PLACE, [blobs.grads[o:o + n], MPI.FLOAT], op=MPI.SUM)
    else:
        wcomm.Allreduce(MPI.IN_PLACE, [blobs.grads, MPI.FLOAT], op=MPI.SUM)
