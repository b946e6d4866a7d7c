"""How gradients travel: the transport's share of the line rate, and the gradient's precision.

``cluster.transport``:

* ``rdma`` (InfiniBand verbs, RoCE, Slingshot, Omni-Path): messages run at the link's line
  rate (``wire_efficiency`` 1, today's model). NCCL's own peak over RDMA is 96% of it: "We
  usually consider 24GB/s is the peak performance per 200G NIC (12 GB/s for 100G NICs)"
  (S. Jeaugey, NVIDIA/nccl-tests issue #119, 2022); a scenario that wants it says so.
* ``tcp`` (kernel sockets: gRPC, Gloo, NCCL's socket transport, ps-lite over ZeroMQ): one
  stream does not fill a fast NIC, and libraries open few. Unset, ``wire_efficiency`` is the
  interval :data:`TCP_WIRE_EFFICIENCY` over three published measurements, with their median
  as the nominal value (:data:`TCP_READINGS`; the midpoint of the extremes would weigh the raw
  ``iperf`` reading, an upper bound for a collective library, as much as both NCCL ones):

  - 0.32: NCCL's allreduce over a 100 Gb/s TCP network, 4 nodes of 8 V100: "The best
    performance I ran is 4-6GB/s, which is less than half of the actual bandwidth" (4 of 12.5
    GB/s; NVIDIA/nccl issue #450, 2021);
  - 0.52: NCCL 2.3.7, one ring, allreduce over a 32 Gb/s TCP network, 2.06 of 4 GB/s ("Even
    with large message sizes we have not been able to reliably obtain more than 60% of wire
    speed over 32Gpbs networks", C. Winter, NVIDIA/nccl issue #209, 2019);
  - 0.84: ``iperf -P 4`` between two cloud VMs with V100s, 21.1 Gb/s of 25 Gb/s (``-P 1``:
    13.7 Gb/s, 0.55) (Y. Zhu, bytedance/byteps issue #29, 2019). BytePS's best-practice
    guide: "a single TCP connection usually cannot run up to 25Gbps".

* ``grpc`` (TensorFlow's default distributed runtime): tensors serialized into protocol
  buffers and copied through gRPC's buffers over TCP. Unset, ``wire_efficiency`` is the
  interval :data:`GRPC_WIRE_EFFICIENCY` of two published comparisons with RDMA on the same
  hardware: zero-copy RDMA ran 2.43x faster than gRPC (Yi et al., "Towards Zero Copy Dataflows
  using RDMA", SIGCOMM 2017 posters: 0.41), and RDMA-based gRPC up to 4.1x faster than gRPC
  over IPoIB (Biswas et al., "Accelerating TensorFlow with Adaptive RDMA-based gRPC", HiPC
  2018: 0.24).

``training.gradient_dtype``: the bytes of a gradient element on the wire (fp32 4, fp16 and
bf16 2): mixed-precision training exchanges half-precision gradients, while the optimizer's
master weights (the update, the servers' apply) stay fp32.
"""

from __future__ import annotations

import statistics
from typing import Any

from ..ui import UserError
from .interval import Interval

TRANSPORTS = ("rdma", "tcp", "grpc")
#: the published shares of line rate each transport reached (module docstring: the sources);
#: the default is their range, with their median as the nominal value
READINGS = {"rdma": (1.0,), "tcp": (0.32, 0.52, 0.84), "grpc": (0.24, 0.41)}
TCP_READINGS = READINGS["tcp"]
#: (low, high) share of line rate a TCP transport reaches
TCP_WIRE_EFFICIENCY = (min(TCP_READINGS), max(TCP_READINGS))
#: (low, high) share of line rate TensorFlow's gRPC transport reaches
GRPC_WIRE_EFFICIENCY = (min(READINGS["grpc"]), max(READINGS["grpc"]))
GRADIENT_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0}


def fill_defaults(c: dict[str, Any], source: str) -> None:
    """Fill ``wire_efficiency`` from the transport when unset, and check the ranges of the
    mechanisms' keys (each an Interval)."""
    if c["wire_efficiency"] is None:
        r = READINGS[c["transport"]]
        c["wire_efficiency"] = Interval(statistics.median(r), min(r), max(r))
    for key, lo, hi, what in (("wire_efficiency", 0.0, 1.0, "0 < share <= 1 of line rate"),
                              ("busy_rate_fraction", 0.0, 1.0, "0 < fraction <= 1"),
                              ("fabric_slowdown", 1.0, float("inf"), ">= 1")):
        v = c[key]
        if not (v.low > lo or (lo == 1.0 and v.low >= lo)) or not v.high <= hi:
            raise UserError(f"{source}: cluster.{key}={v.high if v.high > hi else v.low:g} is "
                            f"out of range (allowed {what})")
