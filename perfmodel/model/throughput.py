"""Step time, throughput, efficiency and time to target of sync, async and hybrid training.

Everything is vectorized: a configuration is a set of arrays (strategy, workers, groups,
parameter servers, local batch) that broadcast together, so a sweep of 10^6 configurations is
one call.

Strategies (``STRATEGIES``): ``sync`` is one group of all workers, no servers; ``async`` is one
group per worker, with servers; ``hybrid`` is G synchronous groups exchanging with the servers
asynchronously (Kurth et al. 2017). For G groups of n = W/G workers at local batch b:

  compute      t_c = b F / R(b)                 (F FLOP per sample; R the node rate at batch b)
  straggler    wait for the slowest of the n members of a group (stragglers.wait_s)
  in-group     allreduce of the gradients (collectives), message by message as the step's
               timeline sends them (:mod:`.timeline`): fused, per blob or in buckets, each as
               its gradients are ready when ``overlap``; the part left past backward is exposed
  servers      the group root pushes its gradient and pulls the weights (2 x (alpha + m beta)
               per message on its link), right after each message's in-group reduction, on the
               same timeline (so it overlaps backward as they do; ``comm_s`` includes it); the
               servers hold the parameters sharded round-robin
               by blob (blob k on server k mod S) and each serves every group: the busiest
               server is busy  u = 2 m_max beta + apply  per group update, so G groups
               cycle no faster than G u: T = max(T_alone, G u), the asymptotic bound of a
               closed queueing system (a queueing correction near saturation, M/D/1 in one
               pass, broke monotonicity: faster links could predict slower steps).
  network      links inject at B_link; past ``group_nodes`` (a dragonfly group, a fat-tree
               pod) traffic also crosses the global bisection. A job spread over the machine
               whose nodes all send across it at once gets 2 bisection / N per node (half the
               N nodes on either side share the bisection), so the collectives run at
               min(B_link, 2 bisection / N): the taper of a fat-tree or a dragonfly's global
               links (``bisection_Bps`` = 0: no taper). A fat-tree stated as t:1
               oversubscribed above its leaf switches (``taper``) gives B_link / t.
  I/O          each worker reads b x bytes_per_sample per step: from the shared file system
               (all W at once share its aggregate bandwidth: W b s / B_fs, and no node reads
               faster than its own ``io_node_Bps``) or, staged to node-local storage or
               memory, at ``io_local_Bps`` (the staging, dataset bytes / B_fs, is paid once
               and added to the time to target). With ``io_prefetch`` a reader thread loads
               the next batch during the step: only what exceeds the rest of the step shows.
  update       a worker without servers applies the optimizer after its exchange: SGD with
               momentum makes 5 passes over the parameters at ``update_bandwidth_Bps``.
  step         T = t_c + wait + exposed comm + update + servers (+ exposed I/O);
               throughput = W b / T.
  compute at   ``compute_fraction``: the share of a node's compute left to training in a run
  scale        of several workers (Intel MLSL gives 4 of a KNL's 68 cores to communication
               progress by default; the one-node rate had them all).

"Sustained" uses the mean straggler wait (the mean over a run); "peak" uses the best
iterations' wait (stragglers.PEAK_QUANTILE), as the paper reports peak and sustained rates.
Speedup is the peak FLOP rate over one node's rate at its reference batch (how the paper gets
6173x = 11.73 PF / 1.90 TF); efficiency is sustained throughput over W nodes each running at
the node rate of the same local batch, so it is at most 1.

Convergence (:mod:`.convergence`: McCandlish et al. 2018, Mitliagkas et al. 2016): updates to
the target S(B, tau, mu) for updates of B samples (a group's batch) with staleness tau = G - 1
and the explicit momentum (re-tuned for asynchrony unless the scenario says not). G groups
make G updates per step time, so time to target = S T / G.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from . import collectives, stragglers, timeline
from .convergence import Convergence, retuned_momentum

STRATEGIES = ("sync", "async", "hybrid")
STRATEGY_CODE = {s: i for i, s in enumerate(STRATEGIES)}


@dataclass
class NodeRate:
    """Sustained training rate of one node as a function of local batch, FLOP/s.

    Either a measured curve (``batches``, ``flops``: interpolated in log2(batch), constant
    beyond its ends) or a reference rate ``ref_flops`` at ``ref_batch`` with a saturating
    shape R(b) ~ b / (b + half_batch) (half_batch = 0: the same rate at every batch).
    """

    ref_flops: float
    ref_batch: float = 8.0
    half_batch: float = 0.0
    batches: np.ndarray | None = None
    flops: np.ndarray | None = None

    def __call__(self, batch) -> np.ndarray:
        b = np.asarray(batch, dtype=float)
        if self.batches is not None:
            return np.interp(np.log2(b), np.log2(self.batches), self.flops)
        if self.half_batch <= 0:
            return np.full(b.shape, float(self.ref_flops))
        shape = lambda x: x / (x + self.half_batch)  # noqa: E731
        return self.ref_flops * shape(b) / shape(self.ref_batch)

    @property
    def reference_flops(self) -> float:
        """One node's rate at its reference batch: the denominator of speedups."""
        return float(self(np.array([self.ref_batch]))[0])


@dataclass
class Inputs:
    """Everything but the configuration. Units in the names."""

    rate: NodeRate
    flop_per_sample: float
    blob_bytes: np.ndarray                  # parameter blobs (weight, bias of each layer)
    link_latency_s: float
    link_bandwidth_Bps: float
    allreduce: str = "auto"
    messages: str = "fused"                 # fused, per-blob or bucketed (timeline.MESSAGES)
    overlap: bool = False                   # start each message as its gradients are ready
    blob_ready: np.ndarray | None = None    # per blob: fraction of the compute after which
                                            # its gradient is ready (None: at the end)
    bucket_bytes: float = timeline.DDP_BUCKET_BYTES  # messages="bucketed": bucket size
    cycle_s: float = timeline.HOROVOD_CYCLE_S        # messages="horovod": its cycle time
    fusion_bytes: float = timeline.HOROVOD_FUSION_BYTES  # ... and its fusion buffer
    update_bandwidth_Bps: float = 0.0       # memory rate of a worker's optimizer step (SGD
                                            # with momentum: 5 passes over the parameters;
                                            # 0: free). Workers with servers do not update.
    reduce_bandwidth_Bps: float = 0.0       # gamma = 1 / this (0: reductions are free)
    devices_per_node: int = 1
    intra_latency_s: float = 0.0
    intra_bandwidth_Bps: float = 0.0
    straggler: str = "none"
    straggler_scale: float = 0.0
    straggler_absolute: bool = False        # delays not contained in the node rate (injected)
    straggler_rate_hz: float = 0.0          # straggler="detour": detours per second per node
    ps_apply_bandwidth_Bps: float = 0.0     # server memory rate applying an update (0: free)
    convergence: Convergence | None = None  # updates to the target (None: not modelled);
                                            # its source holds 'momentum' and 'retune'
    step_overhead_s: float = 0.0            # fixed extra time per worker step (e.g. an
                                            # injected delay's mean), added to compute
    compute_fraction: float = 1.0           # share of the node's compute training keeps when
                                            # there are several workers (communication cores)
    nodes: int = 0                          # the machine's nodes (for the bisection share)
    bisection_Bps: float = 0.0              # global bisection bandwidth (0: no taper)
    group_nodes: int = 0                    # nodes with full bandwidth among them (0: none)
    taper: float = 1.0                      # fat-tree oversubscription above the group (t:1)
    io_bytes_per_sample: float = 0.0        # bytes a sample reads (0: I/O not modelled)
    io_fs_Bps: float = 0.0                  # shared file system's aggregate read bandwidth
    io_node_Bps: float = 0.0                # one node's read bandwidth from it (0: no limit)
    io_staging: str = "none"                # none (read from the file system every step) or
                                            # node-local (staged once, read locally)
    io_local_Bps: float = 0.0               # node-local read bandwidth (staging=node-local)
    io_prefetch: bool = True                # the next batch is read during the step
    io_prep_Sps: float = 0.0                # samples/s a node's host prepares (decode and
                                            # augment) for all its devices (0: free)
    dataset_bytes: float = 0.0              # what staging copies once
    # --- mechanisms of lost efficiency (each off at its default: today's model) -------------
    gradient_bytes: float = 4.0             # bytes per gradient element on the wire (fp32 4,
                                            # fp16/bf16 2); the optimizer keeps fp32 weights
    wire_efficiency: float = 1.0            # share of the link's line rate a message reaches
                                            # (RDMA 1; TCP less: transport.py)
    host_staging_Bps: float = 0.0           # GPU gradients copied to host memory and back at
                                            # this rate (no GPUDirect RDMA); 0: not staged
    message_overhead_s: float = 0.0         # fixed cost per message (launch, negotiation,
                                            # serialization set-up): added to each message
    busy_rate_fraction: float = 1.0         # a device's rate with every device of its node
                                            # training, over its rate alone
    overlap_slowdown: float = 0.0           # compute slowed by the communication it overlaps:
                                            # sigma s of compute per s of hidden communication
    placement: str = "spread"               # spread: every node's traffic crosses the
                                            # bisection past a group; contiguous: ranks in
                                            # topology order (a ring crosses group boundaries
                                            # once per group)
    servers_colocated: bool = False         # parameter servers on the worker nodes, sharing
                                            # their links (sync with servers only)
    ps_merge_bandwidth_Bps: float = 0.0     # a synchronous server's rate merging one push of
                                            # its share into the sum and updating (0: free)
    ps_placement: str = ""                  # how the servers hold the parameters (PS_PLACEMENTS;
                                            # "": each strategy's old rule, even for sync,
                                            # round-robin for async and hybrid)
    flow_cap_Bps: float = 0.0               # a cloud's cap on one TCP flow (0: none); a node's
                                            # collectives run at most flows_per_node of them
    flows_per_node: float = 1.0
    fabric_slowdown: float = 1.0            # inter-node communication time x this when a job
                                            # spans more than one group (other jobs' traffic)
    ps_pull: str = "with-push"              # synchronous servers: each variable's pull follows
                                            # its push on the backward timeline (MXNet, BytePS)
                                            # or "step-start": every worker reads all the
                                            # weights before its forward (TensorFlow): pull_s
    extra: dict = field(default_factory=dict)

    @property
    def param_bytes(self) -> float:
        return float(np.sum(self.blob_bytes))

    @property
    def wire_scale(self) -> float:
        """Bytes on the wire per byte of fp32 parameters (gradient_dtype)."""
        return self.gradient_bytes / 4.0

    @property
    def wire_blob_bytes(self) -> np.ndarray:
        """The gradient blobs as sent (gradient_dtype)."""
        return np.asarray(self.blob_bytes, float) * self.wire_scale

    def busiest_shard_bytes(self, servers, placement: str = "round-robin") -> np.ndarray:
        """Bytes held by the busiest of S servers (an array of S), under ``placement``
        (:data:`PS_PLACEMENTS`): ``even`` M / S; ``round-robin`` whole blobs, blob k on server
        k mod S; ``greedy`` whole blobs, each on the least loaded server so far."""
        s = np.asarray(servers, dtype=int)
        out = np.zeros(s.shape)
        blobs = np.asarray(self.blob_bytes, float)
        for n in np.unique(s):
            if n < 1:
                continue
            out[s == n] = _busiest(blobs, int(n), placement)
        return out

    def server_imbalance(self, servers) -> np.ndarray:
        """The busiest server's load over an even share, S max_load / M (>= 1; 1 for even)
        under this scenario's synchronous placement."""
        s = np.maximum(np.asarray(servers, dtype=float), 1.0)
        placement = self.ps_placement or "even"
        if placement == "even":
            return np.ones(s.shape)
        return self.busiest_shard_bytes(s, placement) * s / self.param_bytes


#: How parameter servers hold the parameters. ``even``: every tensor split over all servers
#: (MXNet's kvstore splits arrays over MXNET_KVSTORE_BIGARRAY_BOUND = 10^6 elements evenly over
#: the servers; BytePS partitions tensors into 4 MB pieces). ``round-robin``: whole variables,
#: the k-th created on server k mod S: TensorFlow's ``tf.compat.v1.train.replica_device_setter``
#: without a ``ps_strategy`` ("defaults to a round-robin strategy across all ps devices", its
#: API docs). ``greedy``: whole variables, each on the server with the fewest bytes so far:
#: ``GreedyLoadBalancingStrategy`` with ``byte_size_load_fn``, as tf_cnn_benchmarks places
#: them (tensorflow/benchmarks, scripts/tf_cnn_benchmarks/variable_mgr.py,
#: VariableMgrDistributedFetchFromPS.get_devices). A whole variable cannot be split, so past
#: M / largest-variable servers the busiest holds the largest variable whatever the rule:
#: ResNet-50's 9.4 MB convolution against 1.6 MB a server at 64 servers, 5.9x.
PS_PLACEMENTS = ("even", "round-robin", "greedy")


def _busiest(blobs: np.ndarray, servers: int, placement: str) -> float:
    if placement == "even":
        return float(blobs.sum()) / servers
    load = np.zeros(servers)
    if placement == "round-robin":
        np.add.at(load, np.arange(len(blobs)) % servers, blobs)
    elif placement == "greedy":
        for b in blobs:
            load[np.argmin(load)] += b
    else:
        raise ValueError(f"unknown parameter-server placement {placement!r}")
    return float(load.max())


def line_Bps(inp: Inputs) -> float:
    """What one node's link delivers, untapered: its line rate times the transport's share,
    at most ``flows_per_node`` x a cloud's cap on one TCP flow."""
    line = float(inp.link_bandwidth_Bps) * inp.wire_efficiency
    if inp.flow_cap_Bps > 0:
        line = min(line, inp.flows_per_node * inp.flow_cap_Bps)
    return line


def link_bandwidth_Bps(inp: Inputs, nodes, algorithm: str | None = None) -> np.ndarray:
    """Per-node bandwidth of a collective among ``nodes`` nodes: the link's line rate times
    the transport's share of it (``wire_efficiency``), or the node's share of the global
    bisection, 2 bisection / N, once the nodes span more than one full-bandwidth group (the
    taper; a cloud's cap on one TCP flow, ``flow_cap_Bps``, bounds a node's
    ``flows_per_node`` flows). With ``placement = "contiguous"`` a ring (``algorithm="ring"``) over ranks in
    topology order crosses each group boundary on one link per direction, so it pays the taper
    only where a group's uplink, group_nodes x its share, is below one link."""
    nodes = np.asarray(nodes, float)
    bw = np.full(nodes.shape, line_Bps(inp))
    share = np.inf
    if inp.bisection_Bps > 0 and inp.nodes > 0:
        share = 2.0 * inp.bisection_Bps / inp.nodes
    if inp.taper > 1:  # a fat-tree oversubscribed taper:1 above its leaf switches
        share = min(share, inp.link_bandwidth_Bps / inp.taper)
    if np.isfinite(share):
        if algorithm == "ring" and inp.placement == "contiguous":
            share = share * max(inp.group_nodes, 1)  # the whole group's uplink, one ring edge
        bw = np.where(nodes > max(inp.group_nodes, 1), np.minimum(bw, share), bw)
    return bw


def _inter_s(inp: Inputs, algorithm: str, nodes, nbytes, gamma) -> np.ndarray:
    """The inter-node allreduce of ``nbytes`` among ``nodes`` nodes, with the fabric's
    slowdown past one group; NCCL's choice takes each algorithm with its own taper."""
    if algorithm == "nccl":
        return np.minimum(_inter_s(inp, "ring", nodes, nbytes, gamma),
                          _inter_s(inp, "two-tree", nodes, nbytes, gamma))
    beta = 1.0 / link_bandwidth_Bps(inp, nodes, algorithm)
    t = collectives.allreduce_s(algorithm, nodes, nbytes, inp.link_latency_s, beta, gamma)
    if inp.fabric_slowdown != 1.0:
        t = t * np.where(np.asarray(nodes) > max(inp.group_nodes, 1), inp.fabric_slowdown, 1.0)
    return t


def _allreduce_bytes(inp: Inputs, p, nbytes: float) -> np.ndarray:
    """One allreduce of ``nbytes`` among ``p`` workers (hierarchical with several devices a
    node: reduce-scatter inside, allreduce across the nodes, allgather inside)."""
    d = max(inp.devices_per_node, 1)
    p = np.asarray(p, float)
    nodes = np.ceil(p / d)
    gamma = 1.0 / inp.reduce_bandwidth_Bps if inp.reduce_bandwidth_Bps > 0 else 0.0
    inter = _inter_s(inp, inp.allreduce, nodes, nbytes, gamma)
    if d > 1:
        return inter + collectives.intra_node_s(np.minimum(p, d), nbytes, inp.intra_latency_s,
                                                1.0 / inp.intra_bandwidth_Bps, gamma)
    return inter


def _staging_s(inp: Inputs, p, nbytes) -> np.ndarray:
    """Copying a message to host memory and back (no GPUDirect RDMA), when it leaves the node."""
    if inp.host_staging_Bps <= 0:
        return 0.0
    nodes = np.ceil(np.asarray(p, float) / max(inp.devices_per_node, 1))
    return np.where(nodes > 1, 2.0 * np.asarray(nbytes, float) / inp.host_staging_Bps, 0.0)


def messages(inp: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """(bytes on the wire, ready fraction) of the step's messages in the order they are sent."""
    return timeline.messages(inp.wire_blob_bytes, inp.blob_ready, inp.messages,
                             inp.bucket_bytes)


def ps_sync_s(inp: Inputs, workers, nbytes, servers, merge: bool = True) -> np.ndarray:
    """One message of synchronous training with parameter servers (MXNet ``dist_sync``,
    TensorFlow's parameter-server strategy, BytePS): the devices of a node reduce it first
    (an in-node reduce-scatter and allgather, as MXNet's device kvstore and BytePS do), then
    each node pushes it and pulls the sum, each key's load spread over the servers. Full-duplex
    links, as Jiang et al. (BytePS, OSDI 2020, sec. 2-3) count them: servers on their own
    nodes take max(m / B, N m / (S B)) for N nodes (the nodes' links or the servers',
    whichever is busier); servers on the worker nodes, sharing their links, 2 (N - 1) m /
    (N B), an allreduce's traffic. Whole variables on the servers (``ps_placement``
    round-robin or greedy) load the busiest server f = S max_load / M times an even share:
    its link carries N f m / S (apart), or the busiest node's m - l + (N - 1) l with
    l = f m / N (colocated); spread over the step's messages in proportion to their bytes.
    ``ps_merge_bandwidth_Bps``: the busiest server also merges the N pushes of its share on
    its CPU (sum and update), N f m / (S R), pipelined with their arrival, so the slower of
    the two paces the message. MXNet's kvstore server took 780 us to update a 2 MB key that
    took 200 us to send, with about 10 of 64 cores busy (Y. Jiang, apache/mxnet issue #14485,
    2019): 2.6 GB/s per server process. ``merge=False``: a pull alone (nothing to merge)."""
    d = max(inp.devices_per_node, 1)
    p = np.asarray(workers, float)
    n = np.ceil(p / d)
    m = np.asarray(nbytes, float)
    s = np.maximum(np.asarray(servers, float), 1.0)
    bw = link_bandwidth_Bps(inp, n)
    f = inp.server_imbalance(s)  # whole variables on few servers: the busiest is f x a share
    if inp.servers_colocated:  # the busiest node: its own pushes, and pulls to the N - 1 others
        load = f * m / np.maximum(n, 1)
        wire = np.maximum(m - load + (n - 1) * load, 0.0) / bw
    else:
        wire = np.maximum(m, n * f * m / s) / bw
    if merge and inp.ps_merge_bandwidth_Bps > 0:  # the busiest server merges N pushes of its share, as
        # they arrive: its CPU or its link, whichever is slower, paces the message
        wire = np.maximum(wire, np.where(n > 1, n * f * m / s / inp.ps_merge_bandwidth_Bps,
                                         0.0))
    intra = (collectives.intra_node_s(np.minimum(p, d), m, inp.intra_latency_s,
                                      1.0 / inp.intra_bandwidth_Bps) if d > 1 else 0.0)
    return intra + 2 * inp.link_latency_s + wire


def message_s(inp: Inputs, p, nbytes, servers: bool = False, sync_servers=None
              ) -> np.ndarray:
    """One message of the step's timeline, in s: its allreduce among ``p`` workers and, with
    ``servers``, the group root's push to its server and pull of the new weights; with
    ``sync_servers`` (the number of servers of a synchronous run), the push and pull of
    every worker instead (:func:`ps_sync_s`). Each message also pays the library's fixed
    cost and, without GPUDirect, its copies through host memory."""
    if sync_servers is not None:
        c = ps_sync_s(inp, p, nbytes, sync_servers)
    else:
        c = _allreduce_bytes(inp, p, nbytes)
        if servers:
            c = c + 2 * (inp.link_latency_s + np.asarray(nbytes, float)
                         / line_Bps(inp))
    extra = _staging_s(inp, p, nbytes)
    if inp.message_overhead_s > 0:
        extra = extra + np.where(np.asarray(p, float) > 1, inp.message_overhead_s, 0.0)
    return c + extra


def pull_s(inp: Inputs, workers, servers) -> np.ndarray:
    """Synchronous servers with ``ps_pull="step-start"`` (TensorFlow): the time in s every
    worker spends reading all the weights (fp32, whatever the gradients' dtype) from the
    servers before its forward, all variables' reads in flight at once (one latency, the
    busiest link or server as :func:`ps_sync_s`). It is exposed: TensorFlow issues the reads
    in no fixed order, so the first layer's weights are as likely to come last as first,
    and an ordered pull that overlaps the forward was the fix TicTac had to add (Hashemi et
    al., "TicTac: Accelerating Distributed Deep Learning with Communication Scheduling",
    MLSys 2019: "random order of received parameters across workers"). The pushes still
    ride the backward timeline; the pull no longer shares their message."""
    m = inp.param_bytes
    return np.where(np.asarray(workers, float) > 1,
                    ps_sync_s(inp, workers, m, servers, merge=False), 0.0)


UPDATE_PASSES = 5  # SGD with momentum reads weights, gradients, momenta; writes two of them


def comm_s(inp: Inputs, p, t_compute, servers: bool = False, sync_servers=None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(exposed, total) in-group communication per step: the timeline of the step's messages
    against its backward pass (:mod:`.timeline`). ``servers``: each message is followed, on
    the group root's link, by its push to the parameter server and the pull of the new
    weights, 2 (alpha + m beta) (Intel Caffe's hybrid: per layer, reduce to the root, exchange
    with the blob's server, broadcast), so the round trip overlaps backward as the
    allreduces do. ``sync_servers``: synchronous training with that many servers (an array
    over the configurations), each message pushed and pulled by every worker."""
    t_c = np.asarray(t_compute, float)
    group = np.broadcast_to(np.asarray(p, float), t_c.shape)
    if sync_servers is not None:  # the cost depends on two arrays: one group size at a time
        s_arr = np.broadcast_to(np.asarray(sync_servers, float), t_c.shape)
        exp, tot = np.zeros(t_c.shape), np.zeros(t_c.shape)
        for s_val in np.unique(s_arr):
            mask = s_arr == s_val
            e, c = _comm(inp, group[mask], t_c[mask],
                         lambda q, x, s_val=s_val: message_s(inp, q, x, sync_servers=s_val))
            exp[mask], tot[mask] = e, c
        return exp, tot
    return _comm(inp, group, t_c, lambda q, x: message_s(inp, q, x, servers))


def _comm(inp: Inputs, group, t_c, cost) -> tuple[np.ndarray, np.ndarray]:
    if inp.messages == "horovod":
        return timeline.horovod(t_c, cost, group, inp.wire_blob_bytes, inp.blob_ready,
                                inp.overlap, inp.cycle_s, inp.fusion_bytes * 1.0)
    nb, ready = messages(inp)
    return timeline.exposed(t_c, cost, group, nb, ready, inp.overlap)


def io_s(inp: Inputs, workers, batch) -> tuple[np.ndarray, float]:
    """(input time of one step in s, one-off staging time in s) for W workers at local batch
    b: reading the batches, and preparing them on the node's host CPUs (``io_prep_Sps``:
    the node's devices share it, min(W, d) b / rate), whichever is slower; both run beside
    the step with prefetch. A CPU input pipeline caps a node however fast its devices are,
    the "prep stalls" of Mohan et al. ("Analyzing and Mitigating Data Stalls in DNN
    Training", VLDB 2021): one device alone rarely meets it, a node's eight do."""
    w, b = np.broadcast_arrays(np.asarray(workers, float), np.asarray(batch, float))
    prep = (np.minimum(w, max(inp.devices_per_node, 1)) * b / inp.io_prep_Sps
            if inp.io_prep_Sps > 0 else np.zeros(w.shape))
    nbytes = b * inp.io_bytes_per_sample
    if inp.io_bytes_per_sample <= 0:
        return prep, 0.0
    if inp.io_staging == "node-local":
        return np.maximum(nbytes / inp.io_local_Bps, prep), inp.dataset_bytes / inp.io_fs_Bps
    t = w * nbytes / inp.io_fs_Bps
    if inp.io_node_Bps > 0:
        t = np.maximum(t, nbytes / inp.io_node_Bps)
    return np.maximum(t, prep), 0.0


def alone_exposed_s(inp: Inputs, t_c) -> np.ndarray:
    """What Horovod's cycles leave past backward for one worker at the same compute time: its
    sends cost nothing, so its cycles stay on the grid k x cycle_s from the step's start and
    the last gradient (ready at the end of backward) leaves at the first tick after it. The
    recurrence anchors the cycles at the step's start, and sends that end between two ticks
    move the next cycle earlier, so a group's exposed part could come out a fraction of a
    cycle below one worker's; the real loop's phase is not tied to the step, so no group
    exposes less than one worker alone: this is its floor. (:func:`timeline.horovod` with free
    sends gives the same, as the tests check.)"""
    t_c = np.asarray(t_c, float)
    return inp.cycle_s * np.ceil(t_c / inp.cycle_s - 1e-12) - t_c


def evaluate(inp: Inputs, strategy, workers, groups, servers, batch) -> dict[str, np.ndarray]:
    """Predictions for configurations given as broadcastable arrays.

    ``strategy``: codes of STRATEGIES (or names); ``batch``: local batch per worker; ``sync``
    with servers is synchronous training through parameter servers (:func:`ps_sync_s`).
    Returns arrays: step_time_s, peak_step_time_s, compute_s, comm_s, update_s, ps_s (waits
    on servers: a busy server, and the step-start pull of :func:`pull_s`), io_s,
    straggler_s, overlap_s, throughput_samples_per_s, throughput_flops,
    peak_throughput_flops, efficiency, speedup, steps_to_target, time_to_target_s (NaN
    without a convergence model).
    """
    code = np.vectorize(lambda s: STRATEGY_CODE[s] if isinstance(s, str) else s, otypes=[int])(
        strategy) if np.asarray(strategy).dtype.kind in "UO" else np.asarray(strategy)
    w, g, s, b = np.broadcast_arrays(*(np.asarray(v, dtype=float)
                                       for v in (workers, groups, servers, batch)))
    code = np.broadcast_to(code, w.shape)
    g = np.where(code == 0, 1.0, np.where(code == 1, w, g))
    n = w / g
    rate = inp.rate(b)
    compute = b * inp.flop_per_sample / rate
    t_full = compute + inp.step_overhead_s  # the whole node's
    t_c = np.where(w > 1, compute / inp.compute_fraction, compute)
    if inp.busy_rate_fraction != 1.0:  # several workers on a node slow each other
        t_c = np.where(np.minimum(w, max(inp.devices_per_node, 1)) > 1,
                       t_c / inp.busy_rate_fraction, t_c)
    t_c = t_c + inp.step_overhead_s
    wait_mean, wait_best = stragglers.wait_s(inp.straggler, n, t_c, inp.straggler_scale,
                                             inp.straggler_absolute, inp.straggler_rate_hz)
    m = inp.param_bytes
    beta = 1.0 / line_Bps(inp)  # a group root's own link to the servers
    has_ps = s >= 1
    sync_ps = has_ps & (code == 0)
    # one timeline per configuration; with servers, each message carries the root's round trip
    t_ar, t_tot = np.zeros(t_c.shape), np.zeros(t_c.shape)
    for mask, kw in ((~has_ps, dict(servers=False)), (has_ps & ~sync_ps, dict(servers=True)),
                     (sync_ps, None)):
        if mask.any():
            if kw is None:
                kw = dict(sync_servers=s[mask])
            t_ar[mask], t_tot[mask] = comm_s(inp, n[mask], t_c[mask], **kw)
    if inp.messages == "horovod":
        t_ar = np.maximum(t_ar, alone_exposed_s(inp, t_c))
    # communication hidden behind backward slows the compute it overlaps
    overlap = inp.overlap_slowdown * np.minimum(t_tot - t_ar, t_c) if inp.overlap else 0 * t_c
    update = (UPDATE_PASSES * m / inp.update_bandwidth_Bps
              if inp.update_bandwidth_Bps > 0 else 0.0)
    upd = np.where(has_ps & ~sync_ps, 0.0, update)  # a worker's optimizer step follows its
    # exchange; with asynchronous servers the servers apply it
    shard = inp.busiest_shard_bytes(np.where(has_ps, s, 0), inp.ps_placement or "round-robin")
    apply_s = shard * 3 / inp.ps_apply_bandwidth_Bps if inp.ps_apply_bandwidth_Bps > 0 else 0.0
    busy = np.where(has_ps & ~sync_ps, 2 * shard * inp.wire_scale * beta + apply_s, 0.0)
    t_io, staging_s = io_s(inp, w, b)
    pull = (np.where(sync_ps, pull_s(inp, n, np.maximum(s, 1.0)), 0.0)
            if inp.ps_pull == "step-start" and sync_ps.any() else 0.0)  # in ps_s
    out = {}
    for tag, wait in (("", wait_mean), ("peak_", wait_best)):
        alone = (t_c + wait + t_ar + overlap + upd + pull
                 + np.where(has_ps & ~sync_ps, apply_s, 0.0))
        # closed system of G groups sharing the busiest server: asymptotic bound
        no_io = np.maximum(alone, np.where(has_ps, g * busy, 0.0))
        t = np.maximum(no_io, t_io) if inp.io_prefetch else no_io + t_io
        out[tag + "step_time_s"] = t
        if not tag:
            out["io_s"] = t - no_io
            out["ps_s"] = no_io - (t_c + wait + t_ar + overlap + upd)
    t = out["step_time_s"]
    samples = w * b / t
    out.update(compute_s=t_c, comm_s=t_ar, update_s=upd + 0 * t, straggler_s=wait_mean,
               overlap_s=overlap + 0 * t, throughput_samples_per_s=samples,
               throughput_flops=samples * inp.flop_per_sample,
               peak_throughput_flops=w * b * inp.flop_per_sample / out["peak_step_time_s"],
               efficiency=samples * t_full / (w * b))  # over W whole nodes that never wait
    out["speedup"] = out["peak_throughput_flops"] / inp.rate.reference_flops
    conv = inp.convergence
    if conv is not None:
        tau = g - 1.0
        mom = conv.source.get("momentum")
        mu = (retuned_momentum(conv.ref_momentum, tau) if conv.source.get("retune", True)
              else (conv.ref_momentum if mom is None else mom))
        updates = conv.updates(n * b, tau, mu)
        out["steps_to_target"] = updates
        out["time_to_target_s"] = updates * t / g + staging_s
    else:
        out["steps_to_target"] = np.full(t.shape, np.nan)
        out["time_to_target_s"] = np.full(t.shape, np.nan)
    return out

