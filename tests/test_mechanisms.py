"""The mechanisms by which real runs lose efficiency (perfmodel.model.throughput, .transport):
each one off gives the model of before; on, it costs what it says; no strategy, overlap or
message scheme makes a group faster per worker than one device alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.model import scenario as SC
from perfmodel.model.predict import predict
from perfmodel.model.throughput import evaluate, messages

RN50 = ['workload.net="resnet50"', "workload.image_size=224"]
#: predictions of the parent commit of the mechanisms (eeb37bc), throughput in samples/s
BEFORE = [
    ("cori-knl-hep", [], 678392.1177262637),
    ("cori-knl-climate", [], 15547.595155364774),
    ("perlmutter-gpu-hep", [], 89255.91245276087),
    ("cpu-epyc-hdr-hep", [], 60289.45205467759),
    ("perlmutter-gpu-hep", RN50 + ["cluster.overlap=true", 'cluster.messages="horovod"'],
     63369.902955175516),
    ("perlmutter-gpu-hep", RN50 + ["cluster.overlap=true"], 61894.60959032437),
    ("cpu-epyc-hdr-hep", ["cluster.taper=4", "cluster.group_nodes=16", "training.workers=256"],
     32331.796421366216),
]
#: each mechanism's key with its off value and a value that turns it on
MECHANISMS = [
    ("cluster.wire_efficiency", "1.0", "0.3"),
    ('cluster.transport', '"rdma"', '"tcp"'),
    ("cluster.busy_rate_fraction", "1.0", "0.9"),
    ("cluster.overlap_slowdown", "0.0", "0.3"),
    ("cluster.message_overhead_s", "0.0", "1e-4"),
    ("cluster.host_staging_Bps", "0.0", "10e9"),
    ("cluster.fabric_slowdown", "1.0", "1.3"),
    ("cluster.flow_cap_Bps", "0.0", "0.625e9"),
    ('training.gradient_dtype', '"fp32"', '"fp16"'),
    ("io.node_prep_samples_per_s", "0.0", "5e2"),
]
BASE = ("perlmutter-gpu-hep", RN50 + ["training.workers=512", "cluster.group_nodes=16"])


def _thr(name: str, sets: list[str]) -> float:
    s, _ = SC.load(name, sets)
    return predict(s)["throughput_samples_per_s"]


@pytest.mark.parametrize("name,sets,before", BEFORE)
def test_with_every_mechanism_off_the_model_predicts_what_it_did(name, sets, before):
    assert _thr(name, sets) == pytest.approx(before, rel=1e-12)


@pytest.mark.parametrize("key,off,on", MECHANISMS)
def test_each_mechanism_off_is_today_and_on_moves_the_prediction(key, off, on):
    name, sets = BASE
    if key == "cluster.overlap_slowdown":  # it costs only what overlaps
        sets = sets + ["cluster.overlap=true", 'cluster.messages="bucketed"']
    today = _thr(name, sets)
    assert _thr(name, sets + [f"{key}={off}"]) == pytest.approx(today, rel=1e-12)
    moved = _thr(name, sets + [f"{key}={on}"])
    if key == "training.gradient_dtype":
        assert moved > today  # half the bytes on the wire
    else:
        assert moved < today


def test_overlap_slowdown_costs_only_the_hidden_communication():
    name, sets = BASE
    sets = sets + ["cluster.overlap=true", 'cluster.messages="bucketed"']
    s, _ = SC.load(name, sets + ["cluster.overlap_slowdown=0.5"])
    inp = SC.to_inputs(s)
    r = evaluate(inp, "sync", 512, 1, 0, 32)
    s0, _ = SC.load(name, sets)
    r0 = evaluate(SC.to_inputs(s0), "sync", 512, 1, 0, 32)
    # the exposed part is unchanged; the cost is half of what was hidden, and it shows
    assert r["comm_s"] == pytest.approx(r0["comm_s"])
    assert 0 < r["overlap_s"] <= 0.5 * r0["compute_s"]
    assert r["step_time_s"] == pytest.approx(r0["step_time_s"] + r["overlap_s"])
    s1, _ = SC.load(name, sets + ["cluster.overlap_slowdown=0.5", "cluster.overlap=false"])
    assert float(evaluate(SC.to_inputs(s1), "sync", 512, 1, 0, 32)["overlap_s"]) == 0.0


def test_fp16_gradients_halve_the_bytes_on_the_wire():
    name, sets = BASE
    inps = [SC.to_inputs(SC.load(name, sets + [f'training.gradient_dtype="{d}"'])[0])
            for d in ("fp32", "fp16", "bf16")]
    wire = [messages(i)[0].sum() for i in inps]
    assert wire[1] == pytest.approx(wire[0] / 2) and wire[2] == wire[1]
    assert inps[1].param_bytes == inps[0].param_bytes  # the optimizer keeps fp32 weights


def _comm(sets: list[str], workers: int) -> float:
    s, _ = SC.load("cpu-epyc-hdr-hep", ["training.workers=4", "cluster.group_nodes=16",
                                        "cluster.taper=4"] + sets)
    return float(evaluate(SC.to_inputs(s), "sync", workers, 1, 0, 8)["comm_s"])


def test_a_ring_over_contiguous_ranks_pays_the_taper_at_group_boundaries_only():
    ring = ['cluster.allreduce="ring"']
    within = _comm(ring + ['cluster.placement="contiguous"'], 16)
    assert within == _comm(ring, 16)  # one group: no taper either way
    # past the group: spread placement pays taper 4 on all traffic; a contiguous ring crosses
    # each boundary on one link, and a 16-node group's uplink (16 x 1/4 link) carries it
    spread, contiguous = (_comm(ring + [f'cluster.placement="{p}"'], 256)
                          for p in ("spread", "contiguous"))
    untapered = _comm(ring + ["cluster.taper=1"], 256)
    assert contiguous == pytest.approx(untapered) and spread > 1.5 * contiguous
    # halving-doubling's far steps cross the bisection with every node: tapered either way
    rab = ['cluster.allreduce="rabenseifner"']
    assert _comm(rab + ['cluster.placement="contiguous"'], 256) == _comm(rab, 256)
    # a group's uplink below one link: the boundary is the bottleneck again
    narrow = _comm(ring + ['cluster.placement="contiguous"', "cluster.group_nodes=2",
                           "cluster.taper=8"], 256)
    assert narrow > untapered


def test_synchronous_servers_on_their_own_nodes_or_on_the_workers():
    # BytePS's counts: N nodes, S servers apart: max(m/B, N m/(S B)); colocated 2(N-1)m/(NB)
    base = ['training.strategy="sync"', "training.groups=1", "training.workers=8",
            "training.param_servers=8", "cluster.nodes=16",
            'cluster.messages="fused"', "cluster.devices_per_node=1"]
    s, _ = SC.load("cpu-epyc-hdr-hep", base)
    inp = SC.to_inputs(s)
    m = inp.param_bytes
    bw = inp.link_bandwidth_Bps
    apart = float(evaluate(inp, "sync", 8, 1, 8, 8)["comm_s"])
    assert apart == pytest.approx(2 * inp.link_latency_s + m / bw)
    few = float(evaluate(inp, "sync", 8, 1, 2, 8)["comm_s"])
    assert few == pytest.approx(2 * inp.link_latency_s + 8 * m / (2 * bw))
    s2, _ = SC.load("cpu-epyc-hdr-hep", base + ["training.servers_colocated=true"])
    colo = float(evaluate(SC.to_inputs(s2), "sync", 8, 1, 8, 8)["comm_s"])
    assert colo == pytest.approx(2 * inp.link_latency_s + 2 * 7 / 8 * m / bw)


def test_bad_mechanism_values_are_errors_naming_the_field():
    from perfmodel.ui import UserError

    for sets, field in ((["cluster.wire_efficiency=1.5"], "cluster.wire_efficiency"),
                        (["cluster.busy_rate_fraction=0"], "cluster.busy_rate_fraction"),
                        (["cluster.fabric_slowdown=0.5"], "cluster.fabric_slowdown"),
                        (['cluster.transport="ib"'], "cluster.transport"),
                        (['training.gradient_dtype="fp8"'], "training.gradient_dtype"),
                        (["training.servers_colocated=true"], "servers_colocated")):
        with pytest.raises(UserError, match=field.replace(".", r"\.")):
            SC.load("perlmutter-gpu-hep", sets)


@settings(max_examples=60, deadline=None)
@given(strategy=st.sampled_from(["sync", "async", "hybrid"]),
       overlap=st.booleans(),
       scheme=st.sampled_from(["fused", "per-blob", "bucketed", "horovod"]),
       workers=st.sampled_from([2, 3, 8, 16, 64, 512]),
       servers=st.sampled_from([1, 2, 8]),
       dtype=st.sampled_from(["fp32", "fp16"]),
       cycle=st.sampled_from([1e-4, 1e-3, 5e-3]),
       batch=st.sampled_from([4, 32, 256]),
       mech=st.sampled_from([[], ["cluster.overlap_slowdown=0.3", "cluster.busy_rate_fraction=0.9",
                                  'cluster.transport="tcp"', "cluster.message_overhead_s=1e-4"]]))
def test_no_group_is_faster_per_worker_than_one_device_alone(strategy, overlap, scheme, workers,
                                                              servers, dtype, cycle, batch, mech):
    s, _ = SC.load("perlmutter-gpu-hep", RN50 + [
        f"cluster.overlap={'true' if overlap else 'false'}", f'cluster.messages="{scheme}"',
        f'training.gradient_dtype="{dtype}"', f"cluster.cycle_s={cycle}"] + mech)
    inp = SC.to_inputs(s)
    groups = {"sync": 1, "async": workers, "hybrid": 2 if workers % 2 == 0 else 1}[strategy]
    ps = 0 if strategy == "sync" else servers
    many = evaluate(inp, strategy, workers, groups, ps, batch)["throughput_samples_per_s"]
    one = evaluate(inp, "sync", 1, 1, 0, batch)["throughput_samples_per_s"]
    devices = workers + ps  # servers on their own devices count: they do the update
    assert float(many) / (devices * float(one)) <= 1 + 1e-12
    assert np.all(evaluate(inp, strategy, workers, groups, ps, batch)["efficiency"] <= 1 + 1e-12)


@pytest.mark.parametrize("t_c", [0.0123, 0.05, 0.1, 0.2371])
@pytest.mark.parametrize("overlap", [False, True])
def test_one_workers_horovod_floor_is_the_recurrence_with_free_sends(t_c, overlap):
    from perfmodel.model import timeline as TL
    from perfmodel.model.throughput import alone_exposed_s

    s, _ = SC.load("perlmutter-gpu-hep", RN50 + ['cluster.messages="horovod"',
                                                 f"cluster.overlap={str(overlap).lower()}"])
    inp = SC.to_inputs(s)
    exp, _ = TL.horovod(np.array([t_c]), lambda q, x: 0.0 * q, np.ones(1), inp.wire_blob_bytes,
                        inp.blob_ready, inp.overlap, inp.cycle_s, inp.fusion_bytes)
    assert float(alone_exposed_s(inp, np.array([t_c]))[0]) == pytest.approx(float(exp[0]),
                                                                             abs=1e-15)


def test_no_silent_defaults_the_prediction_states_what_it_assumes():
    s, _ = SC.load("perlmutter-gpu-hep", ["cluster.overlap=true"])
    said = " ".join(predict(s)["assumptions"])
    assert "the same at every local batch" in said and "busy_rate_fraction = 1" in said
    assert "overlap_slowdown = 0" in said
    s, _ = SC.load("perlmutter-gpu-hep", ["cluster.device_half_batch=[0, 16]",
                                          "cluster.busy_rate_fraction=[0.93, 1]",
                                          "cluster.overlap=true", "cluster.overlap_slowdown=0.2"])
    assert predict(s)["assumptions"] == []


def test_whole_variables_on_many_servers_load_the_busiest_with_the_largest():
    # TensorFlow places whole variables: past M / largest servers the busiest holds the
    # largest variable whatever the rule; an even split (MXNet, BytePS) has no such floor
    base = ['training.strategy="sync"', "training.groups=1", "training.workers=64",
            "training.param_servers=32", "cluster.nodes=128", "cluster.devices_per_node=1",
            'cluster.messages="fused"', 'workload.net="resnet50"', "workload.image_size=224"]
    even = SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base)[0])
    largest = float(np.max(even.blob_bytes))
    for rule in ("round-robin", "greedy"):
        s, _ = SC.load("cpu-epyc-hdr-hep", base + [f'training.ps_placement="{rule}"'])
        inp = SC.to_inputs(s)
        busiest = float(inp.busiest_shard_bytes(np.array([32]), rule)[0])
        assert largest <= busiest <= largest + inp.param_bytes / 32 * 2
        f = float(inp.server_imbalance(np.array([32]))[0])
        assert f == pytest.approx(32 * busiest / inp.param_bytes)
        t = float(evaluate(inp, "sync", 64, 1, 32, 8)["comm_s"])
        assert t == pytest.approx(2 * inp.link_latency_s + 64 * busiest / inp.link_bandwidth_Bps)
        # one server holds everything: no rule matters
        one = float(evaluate(inp, "sync", 64, 1, 1, 8)["comm_s"])
        assert one == pytest.approx(float(evaluate(even, "sync", 64, 1, 1, 8)["comm_s"]))
    # unset: today's rules (even for sync, round-robin for async and hybrid)
    s, _ = SC.load("cpu-epyc-hdr-hep", base + ['training.ps_placement="even"'])
    assert float(evaluate(SC.to_inputs(s), "sync", 64, 1, 32, 8)["comm_s"]) == \
        pytest.approx(float(evaluate(even, "sync", 64, 1, 32, 8)["comm_s"]))
    assert even.busiest_shard_bytes(np.array([2]))[0] == even.busiest_shard_bytes(
        np.array([2]), "round-robin")[0]
    from perfmodel.ui import UserError
    with pytest.raises(UserError, match="training.ps_placement"):
        SC.load("cpu-epyc-hdr-hep", ['training.ps_placement="greedy"',
                                     'training.strategy="sync"', "training.param_servers=0"])


def test_a_servers_merge_rate_paces_synchronous_messages_when_slower_than_its_link():
    # MXNet's kvstore server merges each push on its CPU (apache/mxnet #14485): N f m / (S R)
    base = ['training.strategy="sync"', "training.groups=1", "training.workers=8",
            "training.param_servers=2", "cluster.nodes=16", 'cluster.messages="fused"',
            "cluster.devices_per_node=1"]
    off = SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base)[0])
    t_off = float(evaluate(off, "sync", 8, 1, 2, 8)["comm_s"])
    fast = SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base + [
        "cluster.ps_merge_bandwidth_Bps=1e15"])[0])
    assert float(evaluate(fast, "sync", 8, 1, 2, 8)["comm_s"]) == pytest.approx(t_off)
    slow = SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base + [
        "cluster.ps_merge_bandwidth_Bps=1e6"])[0])
    t_slow = float(evaluate(slow, "sync", 8, 1, 2, 8)["comm_s"])
    assert t_slow == pytest.approx(2 * slow.link_latency_s + 8 * slow.param_bytes / 2 / 1e6)
    # one node: no push crosses to a server's merge
    assert float(evaluate(slow, "sync", 1, 1, 2, 8)["comm_s"]) == pytest.approx(
        float(evaluate(off, "sync", 1, 1, 2, 8)["comm_s"]))


def test_a_step_start_pull_exposes_the_weights_read_before_the_forward():
    # TensorFlow reads every variable from its server before the forward (TicTac, MLSys 2019)
    base = ['training.strategy="sync"', "training.groups=1", "training.workers=8",
            "training.param_servers=2", "cluster.nodes=16", 'cluster.messages="per-blob"',
            "cluster.overlap=true", "cluster.devices_per_node=1"]
    off = evaluate(SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base)[0]), "sync", 8, 1, 2, 8)
    same = evaluate(SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base + [
        'training.ps_pull="with-push"'])[0]), "sync", 8, 1, 2, 8)
    assert float(same["step_time_s"]) == float(off["step_time_s"])
    inp = SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base + ['training.ps_pull="step-start"'])[0])
    on = evaluate(inp, "sync", 8, 1, 2, 8)
    # one bulk read of every weight: a latency each way and the fp32 bytes over one link
    # (two servers apart: each worker's link carries all of them, each server's 8/2 x half)
    bw = inp.link_bandwidth_Bps * inp.wire_efficiency
    pull = 2 * inp.link_latency_s + max(1.0, 8 / 2 * inp.server_imbalance(2.0)) \
        * inp.param_bytes / bw
    assert float(on["step_time_s"] - off["step_time_s"]) == pytest.approx(pull, rel=1e-6)
    assert float(on["ps_s"] - off["ps_s"]) == pytest.approx(pull, rel=1e-6)
    assert float(on["comm_s"]) == float(off["comm_s"])  # the pushes' timeline is unchanged
    # fp16 gradients: the pull still reads fp32 weights
    half = SC.to_inputs(SC.load("cpu-epyc-hdr-hep", base + [
        'training.ps_pull="step-start"', 'training.gradient_dtype="fp16"'])[0])
    from perfmodel.model.throughput import pull_s
    assert float(pull_s(half, 8, 2)) == pytest.approx(float(pull_s(inp, 8, 2)))
    assert float(pull_s(inp, 1, 2)) == 0.0  # one worker reads nothing over the network
    from perfmodel.ui import UserError
    with pytest.raises(UserError, match="training.ps_pull"):
        SC.load("cpu-epyc-hdr-hep", ['training.ps_pull="step-start"'])


def test_a_nodes_input_pipeline_caps_its_devices_together():
    # a node's host CPUs prepare every sample its devices take (Mohan et al., VLDB 2021)
    sets = ["cluster.devices_per_node=4", "training.workers=16", "cluster.nodes=4"]
    inp = SC.to_inputs(SC.load("perlmutter-gpu-hep", sets)[0])
    free = evaluate(inp, "sync", [1, 16], 1, 0, 64)
    t_c = free["compute_s"]
    # a rate that one device alone meets, and four on a node do not
    rate = 3 * 64 / float(t_c[1])
    capped = SC.to_inputs(SC.load("perlmutter-gpu-hep", sets + [
        f"io.node_prep_samples_per_s={rate!r}"])[0])
    out = evaluate(capped, "sync", [1, 16], 1, 0, 64)
    assert float(out["step_time_s"][0]) == float(free["step_time_s"][0])
    assert float(out["step_time_s"][1]) == pytest.approx(4 * 64 / rate)
    assert float(out["io_s"][1]) == pytest.approx(4 * 64 / rate - float(free["step_time_s"][1]))
