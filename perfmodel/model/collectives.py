"""Collective costs in the Hockney (alpha-beta) model, vectorized over ranks and bytes.

t(m) = alpha + m * beta for one message of m bytes; gamma is the reduction cost per byte.
Formulas: Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication Operations
in MPICH" (IJHPCA 2005); p ranks, n bytes, lg = ceil(log2 p):

* ``ring``:               2(p-1) a + 2 n (p-1)/p b + n (p-1)/p g
* ``recursive-doubling``: lg (a + n b + n g)
* ``rabenseifner``:       2 lg a + 2 n (p-1)/p b + n (p-1)/p g   (reduce-scatter + allgather)
* ``reduce-bcast``:       binomial-tree reduce to a root then binomial-tree broadcast, the whole
                          message in every round: 2 lg (a + n b) + lg n g. What Intel Caffe's
                          multinode code does inside a group (reduce to the root, root
                          broadcasts), with MPICH's short-message algorithms.
* ``tree``:               binary tree, reduce up then broadcast down, not pipelined: each inner
                          node exchanges with two children per level, depth floor(log2 p):
                          4 d (a + n b) + 2 d n g
* ``two-tree``:           two pipelined binary trees, each reducing then broadcasting half the
                          message (Sanders, Speck & Traeff, "Two-tree algorithms for full
                          bandwidth broadcast, reduction and scan", Parallel Computing 2009;
                          NCCL's "double binary tree" since 2.4): 2 lg (a) + 2 n b + n g,
                          the latency of a tree with nearly the bandwidth of a ring.
* ``auto``:               MPICH's choice (``MPIR_Allreduce_intra`` in MPICH 3.x,
                          src/mpi/coll/allreduce.c; Thakur et al. 2005 sec. 4.4): recursive
                          doubling when the message is at most
                          ``MPIR_CVAR_ALLREDUCE_SHORT_MSG_SIZE`` = 2048 bytes *or* it has
                          fewer elements (float32) than pof2, the largest power of two <= p;
                          else Rabenseifner. Both run on pof2 ranks: when p is not a power of
                          two, the first 2(p - pof2) ranks pair up first (one sends its data
                          to its neighbour, which reduces) and get the result back at the end,
                          adding 2 (a + n b) + n g.
* ``nccl``:               NCCL's choice between ``ring`` and ``two-tree``: whichever its
                          cost model predicts faster (NCCL ``src/graph/tuning.cc`` picks the
                          algorithm with the least predicted time; Jeaugey, "Massively scale
                          your deep learning training with NCCL 2.4", NVIDIA blog 2019: trees
                          for latency-bound sizes and large rank counts, rings otherwise).

All return seconds; p = 1 costs nothing.
"""

from __future__ import annotations

import numpy as np

ALGORITHMS = ("ring", "recursive-doubling", "rabenseifner", "reduce-bcast", "tree", "two-tree",
              "auto", "nccl")
AUTO_SHORT_BYTES = 2048  # MPIR_CVAR_ALLREDUCE_SHORT_MSG_SIZE
ELEMENT_BYTES = 4       # float32 gradients: MPICH compares the element count with pof2


def _lg(p: np.ndarray) -> np.ndarray:
    return np.ceil(np.log2(np.maximum(p, 1)))


def allreduce_s(algorithm: str, p, nbytes, alpha_s, beta_s_per_B, gamma_s_per_B=0.0
                ) -> np.ndarray:
    """Time in seconds of an allreduce of ``nbytes`` over ``p`` ranks (arrays broadcast)."""
    p = np.asarray(p, dtype=float)
    n = np.asarray(nbytes, dtype=float)
    a, b, g = (np.asarray(v, dtype=float) for v in (alpha_s, beta_s_per_B, gamma_s_per_B))
    lg = _lg(p)
    frac = (p - 1) / np.maximum(p, 1)
    if algorithm == "ring":
        t = 2 * (p - 1) * a + 2 * n * frac * b + n * frac * g
    elif algorithm == "recursive-doubling":
        t = lg * (a + n * b + n * g)
    elif algorithm == "rabenseifner":
        t = 2 * lg * a + 2 * n * frac * b + n * frac * g
    elif algorithm == "reduce-bcast":
        t = 2 * lg * (a + n * b) + lg * n * g
    elif algorithm == "tree":
        d = np.floor(np.log2(np.maximum(p, 1)))
        t = 4 * d * (a + n * b) + 2 * d * n * g
    elif algorithm == "two-tree":
        t = 2 * lg * a + 2 * n * b + n * g
    elif algorithm == "auto":
        pof2 = 2.0 ** np.floor(np.log2(np.maximum(p, 1)))
        short = allreduce_s("recursive-doubling", pof2, n, a, b, g)
        long = allreduce_s("rabenseifner", pof2, n, a, b, g)
        base = np.where((n <= AUTO_SHORT_BYTES) | (n / ELEMENT_BYTES < pof2), short, long)
        t = base + np.where(p > pof2, 2 * (a + n * b) + n * g, 0.0)
    elif algorithm == "nccl":
        t = np.minimum(allreduce_s("ring", p, n, a, b, g), allreduce_s("two-tree", p, n, a, b, g))
    else:
        raise ValueError(f"allreduce={algorithm!r} is not known (allowed: "
                         f"{', '.join(ALGORITHMS)})")
    return np.where(p <= 1, 0.0, t)


def intra_node_s(devices, nbytes, intra_alpha_s, intra_beta_s_per_B, gamma_s_per_B=0.0
                 ) -> np.ndarray:
    """The in-node part of a hierarchical allreduce among ``devices`` devices: a ring
    reduce-scatter before the inter-node step and a ring allgather after it."""
    d = np.asarray(devices, dtype=float)
    n = np.asarray(nbytes, dtype=float)
    frac = (d - 1) / np.maximum(d, 1)
    intra = 2 * ((d - 1) * intra_alpha_s + n * frac * intra_beta_s_per_B) \
        + n * frac * gamma_s_per_B
    return np.where(d <= 1, 0.0, intra)


def hierarchical_allreduce_s(algorithm: str, nodes, devices, nbytes, alpha_s, beta_s_per_B,
                             intra_alpha_s, intra_beta_s_per_B, gamma_s_per_B=0.0
                             ) -> np.ndarray:
    """Intra-node reduce-scatter, inter-node allreduce of each device's 1/devices share (all
    devices of a node in parallel on the node's link, so the whole message crosses it), then
    intra-node allgather: ring costs inside the node."""
    inter = allreduce_s(algorithm, nodes, nbytes, alpha_s, beta_s_per_B, gamma_s_per_B)
    return intra_node_s(devices, nbytes, intra_alpha_s, intra_beta_s_per_B, gamma_s_per_B) + inter


def point_to_point_s(nbytes, alpha_s, beta_s_per_B) -> np.ndarray:
    """One message: alpha + m beta."""
    return np.asarray(alpha_s, dtype=float) + np.asarray(nbytes, dtype=float) * beta_s_per_B
