"""The step's timeline (perfmodel.model.timeline): exposed communication is never more than the
communication, equals it with an instant backward, and one bucket is the fused case; overlap
through buckets or per-blob messages can only help, and the planner-scale sweep stays fast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.model import scenario as SC
from perfmodel.model import timeline as TL
from perfmodel.model import workload as WL
from perfmodel.model.throughput import evaluate


def _cost(alpha=2e-6, beta=1 / 10e9):
    # a ring allreduce's Hockney cost, over arrays of group sizes
    return lambda p, nb: np.where(p > 1, 2 * (p - 1) * alpha + 2 * (p - 1) / p * nb * beta, 0.0)


blobs = st.lists(st.floats(1e3, 5e7), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(blobs, st.floats(1e-4, 1.0), st.sampled_from([m for m in TL.MESSAGES if m != "horovod"]),
       st.integers(2, 4096),
       st.floats(1e5, 1e8), st.randoms(use_true_random=False))
def test_exposed_never_exceeds_the_communication(sizes, t_c, kind, p, bucket, rnd):
    n = len(sizes)
    ready = np.array(sorted(rnd.uniform(0.3, 1.0) for _ in range(n)))[::-1]  # fwd order
    nb, rd = TL.messages(np.array(sizes), ready, kind, bucket)
    assert nb.sum() == pytest.approx(sum(sizes))
    tc = np.array([t_c])
    exp, total = TL.exposed(tc, _cost(), np.array([p]), nb, rd, overlap=True)
    no, total2 = TL.exposed(tc, _cost(), np.array([p]), nb, rd, overlap=False)
    assert total == pytest.approx(total2) and no == pytest.approx(total)
    assert 0 <= exp[0] <= total[0] + 1e-12 * (t_c + total[0])  # up to rounding
    # an instant backward: every gradient ready when compute ends -> nothing hides
    inst, _ = TL.exposed(tc, _cost(), np.array([p]), nb, np.ones(len(nb)), overlap=True)
    assert inst == pytest.approx(total, rel=1e-9, abs=1e-12 * t_c)


def test_one_bucket_is_the_fused_case():
    sizes = np.array([4e6, 1e6, 8e6, 2e5])
    ready = np.array([0.9, 0.8, 0.6, 0.4])
    one = TL.messages(sizes, ready, "bucketed", bucket_bytes=1e12)
    fused = TL.messages(sizes, ready, "fused")
    assert one[0].tolist() == fused[0].tolist()
    tc, p = np.array([0.05]), np.array([64.0])
    assert TL.exposed(tc, _cost(), p, *one, overlap=True)[0] == pytest.approx(
        TL.exposed(tc, _cost(), p, *fused, overlap=True)[0])
    # per blob, in backward order: the last layer's gradient (ready first) goes first
    nb, rd = TL.messages(sizes, ready, "per-blob")
    assert rd.tolist() == sorted(ready) and nb.tolist() == [2e5, 8e6, 1e6, 4e6]


def test_ready_fractions_follow_backward():
    # three layers, equal FLOP: forward 3/9 of the step, then backward from the last layer
    r = TL.ready_fractions([1, 1, 1], [2, 2, 2], owner=[0, 1, 2, 2])
    assert r.tolist() == pytest.approx([9 / 9, 7 / 9, 5 / 9, 5 / 9])


def test_overlap_helps_a_large_model_and_the_sweep_stays_fast():
    base = ['workload.net="resnet50"', "workload.image_size=224", 'training.strategy="sync"',
            "training.groups=1", "training.param_servers=0", "training.workers=1024"]
    step = {}
    for m, o in (("fused", "false"), ("per-blob", "true"), ("bucketed", "true")):
        s, _ = SC.load("cori-knl-hep", [*base, f'cluster.messages="{m}"', f"cluster.overlap={o}"])
        inp = SC.to_inputs(s)
        step[m] = float(evaluate(inp, 0, 1024, 1, 0, 8)["step_time_s"])
    assert step["per-blob"] < step["fused"] and step["bucketed"] < step["fused"]


def _elementwise_cost(alpha=2e-6, beta=1 / 10e9):
    return lambda p, nb: np.where(p > 1, 2 * (p - 1) * alpha + 2 * (p - 1) / p * nb * beta, 0.0)


@settings(max_examples=60, deadline=None)
@given(blobs, st.floats(1e-4, 1.0), st.integers(2, 4096), st.floats(1e-5, 1e-2),
       st.floats(1e5, 2e8), st.randoms(use_true_random=False))
def test_horovod_cycles(sizes, t_c, p, cycle, fusion, rnd):
    """Horovod's cycles: every byte is sent once; what shows past backward is at most the
    communication plus one cycle's wait; without overlap nothing hides."""
    n = len(sizes)
    ready = np.array([rnd.uniform(0.3, 1.0) for _ in range(n)])
    tc, pp = np.array([t_c]), np.array([float(p)])
    rows: list = []
    exp, total = TL.horovod(tc, _elementwise_cost(), pp, np.array(sizes), ready, True, cycle,
                            fusion, rows=rows)
    assert sum(r["bytes"] for r in rows) == pytest.approx(sum(sizes))
    assert all(r["bytes"] <= max(fusion, max(sizes)) * (1 + 1e-12) for r in rows)
    assert 0 <= exp[0] <= total[0] + cycle + 1e-12
    ends = [r["end_s"] for r in rows]
    assert ends == sorted(ends) and all(r["start_s"] >= r["ready_s"] - 1e-12 for r in rows)
    no, total2 = TL.horovod(tc, _elementwise_cost(), pp, np.array(sizes), ready, False, cycle,
                            fusion)
    assert no[0] >= total2[0] - 1e-12 and no[0] <= total2[0] + cycle + 1e-12
    # (overlap is not always better here: gradients ready in different cycles travel in more
    # buffers, each paying its latency, than the one fused buffer sent after backward)


def test_horovod_with_one_huge_buffer_and_a_tiny_cycle_is_the_fused_case():
    sizes = np.array([4e6, 1e6, 8e6, 2e5])
    ready = np.array([0.9, 0.8, 0.6, 0.4])
    tc, p = np.array([0.05]), np.array([64.0])
    fused = TL.exposed(tc, _cost(), p, *TL.messages(sizes, ready, "fused"), overlap=False)
    hv = TL.horovod(tc, _elementwise_cost(), p, sizes, ready, False, cycle_s=1e-9,
                    fusion_bytes=1e12)
    assert hv[0] == pytest.approx(fused[0], rel=1e-6) and hv[1] == pytest.approx(fused[1])
    # overlapped with a short cycle, Horovod hides about as much as per-blob messages do
    per = TL.exposed(tc, _cost(), p, *TL.messages(sizes, ready, "per-blob"), overlap=True)
    hv_on = TL.horovod(tc, _elementwise_cost(), p, sizes, ready, True, cycle_s=1e-6,
                       fusion_bytes=1.0)
    assert hv_on[0] == pytest.approx(per[0], rel=1e-3, abs=1e-5)


def test_horovod_is_vectorized_over_configurations():
    sizes = np.array([4e6, 1e6, 8e6, 2e5])
    ready = np.array([0.9, 0.8, 0.6, 0.4])
    tcs, ps = np.array([0.01, 0.05, 0.2]), np.array([8.0, 64.0, 1024.0])
    both = TL.horovod(tcs, _elementwise_cost(), ps, sizes, ready, True)
    for i in range(3):
        one = TL.horovod(tcs[i:i + 1], _elementwise_cost(), ps[i:i + 1], sizes, ready, True)
        assert both[0][i] == pytest.approx(one[0][0]) and both[1][i] == pytest.approx(one[1][0])


def test_horovod_timeline_cli_matches_the_model(capsys):
    from perfmodel.cli import main
    from perfmodel.model.predict import step_timeline

    sets = ['workload.net="resnet50"', "workload.image_size=224", 'training.strategy="sync"',
            "training.groups=1", "training.param_servers=0", "training.workers=256",
            'cluster.messages="horovod"', "cluster.overlap=true", "cluster.cycle_s=5e-3"]
    s, _ = SC.load("cori-knl-hep", sets)
    tl = step_timeline(s)
    res = evaluate(SC.to_inputs(s), 0, 256, 1, 0, 8)
    assert tl["exposed_s"] == pytest.approx(float(res["comm_s"]))
    assert all(r["start_s"] >= r["ready_s"] for r in tl["schedule"])
    assert main(["predict", "cori-knl-hep", *sum((["--set", x] for x in sets), []),
                 "--timeline"]) == 0
    assert "horovod messages" in capsys.readouterr().out


def test_server_round_trip_rides_the_timeline_and_the_update_follows_the_exchange():
    base = ["training.workers=1064", "training.groups=8", "training.param_servers=6"]
    step = {}
    for o in ("false", "true"):
        s, _ = SC.load("cori-knl-climate", [*base, f"cluster.overlap={o}"])
        step[o] = evaluate(SC.to_inputs(s), "hybrid", 1064, 8, 6, 8)
    # the same messages, hidden behind backward when overlapped
    assert float(step["true"]["comm_s"]) < float(step["false"]["comm_s"])
    s, _ = SC.load("cori-knl-climate", [*base, "cluster.overlap=false"])
    inp = SC.to_inputs(s)
    inp.update_bandwidth_Bps = 0.0  # the optimizer step free, then charged below
    plain = evaluate(inp, "sync", 133, 1, 0, 8)
    ps = evaluate(inp, "hybrid", 1064, 8, 6, 8)  # groups of 133 with servers
    trip = 2 * (len(inp.blob_bytes) * inp.link_latency_s + inp.param_bytes / inp.link_bandwidth_Bps)
    assert float(ps["comm_s"]) == pytest.approx(float(plain["comm_s"]) + trip)
    inp.update_bandwidth_Bps = 100e9
    upd = evaluate(inp, "sync", 133, 1, 0, 8)
    assert float(upd["update_s"]) == pytest.approx(5 * inp.param_bytes / 100e9)
    assert float(upd["step_time_s"]) == pytest.approx(float(plain["step_time_s"])
                                                      + 5 * inp.param_bytes / 100e9)
    assert float(evaluate(inp, "hybrid", 1064, 8, 6, 8)["update_s"]) == 0.0


def test_overlap_defaults_to_buckets_and_bare_params_can_overlap(tmp_path):
    """overlap = true without messages means buckets, as DDP does it; a workload given as
    bare params is spread over backward, so overlap changes its step (it could not before)."""
    text = """[cluster]
nodes = 512
device_peak_flops = 1e13
device_flops = 5e12
link_latency_s = 2e-6
link_bandwidth_Bps = 12.5e9
allreduce = "ring"
{extra}
[workload]
params = 138000000
flop_per_sample = 46e9
[training]
strategy = "sync"
workers = 512
batch_per_worker = 32
"""
    steps = {}
    for name, extra in (("fused", ""), ("overlap", "overlap = true")):
        f = tmp_path / f"{name}.toml"
        f.write_text(text.format(extra=extra))
        s, _ = SC.load(str(f))
        inp = SC.to_inputs(s)
        steps[name] = (inp, evaluate(inp, 0, 512, 1, 0, 32))
    inp, r = steps["overlap"]
    assert inp.messages == "bucketed" and steps["fused"][0].messages == "fused"
    assert len(inp.blob_bytes) == WL.SPREAD_BLOBS
    assert inp.blob_bytes.sum() == pytest.approx(4 * 138e6)
    assert float(r["comm_s"]) < 0.5 * float(steps["fused"][1]["comm_s"])
    assert float(r["efficiency"]) > float(steps["fused"][1]["efficiency"])
    b, ready = WL.spread_blobs(100.0, 4)
    assert b.tolist() == [25.0] * 4 and ready.tolist() == pytest.approx(
        [1.0, 1 / 3 + 2 / 3 * 0.75, 1 / 3 + 2 / 3 * 0.5, 1 / 3 + 2 / 3 * 0.25])


def test_timeline_of_a_hybrid_run_carries_the_server_round_trip():
    """perfmodel predict --timeline for a run with servers shows what the model charges: each
    message with the root's round trip, its exposure equal to the breakdown's comm_s."""
    from perfmodel.model.predict import step_timeline
    from perfmodel.model.predict import predict

    for o in ("false", "true"):
        s, _ = SC.load("cori-knl-climate", [f"cluster.overlap={o}"])
        tl = step_timeline(s)
        assert tl["servers"]
        assert tl["exposed_s"] == pytest.approx(predict(s)["breakdown"]["comm_s"], rel=1e-9)
