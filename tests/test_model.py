"""The analytic model: closed forms, properties (hypothesis), scenarios and their errors."""

from __future__ import annotations

import copy
import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.model import scenario as SC
from perfmodel.cli import main
from perfmodel.model import collectives as C
from perfmodel.model import stragglers as S
from perfmodel.model.throughput import Inputs, NodeRate, evaluate
from perfmodel.model.predict import predict, sweep
from perfmodel.ui import UserError


def inputs(**kw) -> Inputs:
    base = dict(rate=NodeRate(ref_flops=2e12, ref_batch=8, half_batch=kw.pop("half", 0.0)),
                flop_per_sample=15e9, blob_bytes=np.array([1e6, 4e3, 2e6, 8e3]),
                link_latency_s=2e-6, link_bandwidth_Bps=8e9, allreduce="ring",
                straggler="exponential", straggler_scale=0.003)
    base.update(kw)
    return Inputs(**base)


# --- collectives: closed forms at p = 2^k ------------------------------------------------------

@given(k=st.integers(1, 14), n=st.floats(1, 1e9), a=st.floats(1e-8, 1e-4),
       b=st.floats(1e-12, 1e-8), g=st.floats(0, 1e-9))
def test_collectives_equal_closed_forms_at_powers_of_two(k, n, a, b, g):
    p = 2**k
    f = (p - 1) / p
    expect = {
        "ring": 2 * (p - 1) * a + 2 * n * f * b + n * f * g,
        "recursive-doubling": k * (a + n * b + n * g),
        "rabenseifner": 2 * k * a + 2 * n * f * b + n * f * g,
        "reduce-bcast": 2 * k * (a + n * b) + k * n * g,
        "tree": 4 * k * (a + n * b) + 2 * k * n * g,
    }
    for alg, t in expect.items():
        assert float(C.allreduce_s(alg, p, n, a, b, g)) == pytest.approx(t, rel=1e-12)
    expect["two-tree"] = 2 * k * a + 2 * n * b + n * g
    short = n <= C.AUTO_SHORT_BYTES or n / C.ELEMENT_BYTES < p
    auto = expect["recursive-doubling"] if short else expect["rabenseifner"]
    assert float(C.allreduce_s("auto", p, n, a, b, g)) == pytest.approx(auto, rel=1e-12)
    nccl = min(expect["ring"], expect["two-tree"])
    assert float(C.allreduce_s("nccl", p, n, a, b, g)) == pytest.approx(nccl, rel=1e-12)


def test_mpich_switch_points():
    """MPICH's allreduce: recursive doubling up to 2048 bytes or fewer elements than pof2,
    Rabenseifner past both; a non-power-of-two rank count pays the pairing step."""
    a, b = 1e-6, 1e-9
    rd = lambda p, n: float(C.allreduce_s("recursive-doubling", p, n, a, b))  # noqa: E731
    rab = lambda p, n: float(C.allreduce_s("rabenseifner", p, n, a, b))  # noqa: E731
    auto = lambda p, n: float(C.allreduce_s("auto", p, n, a, b))  # noqa: E731
    assert auto(64, 2048) == pytest.approx(rd(64, 2048))
    assert auto(64, 2052) == pytest.approx(rab(64, 2052))
    # 4096 ranks: 16 KiB is 4096 floats, not fewer than pof2: Rabenseifner; 16380 B is fewer
    assert auto(4096, 16384) == pytest.approx(rab(4096, 16384))
    assert auto(4096, 16380) == pytest.approx(rd(4096, 16380))
    # 6 ranks run on 4 after pairing: 2 extra messages of the whole buffer
    n = 1e6
    assert auto(6, n) == pytest.approx(rab(4, n) + 2 * (a + n * b))
    assert auto(6, n) > auto(4, n) and auto(8, n) < auto(6, n)


def test_nccl_picks_the_tree_at_scale_and_the_ring_for_few_ranks():
    a, b = 5e-6, 1 / 12.5e9
    ring = lambda p, n: float(C.allreduce_s("ring", p, n, a, b))  # noqa: E731
    nccl = lambda p, n: float(C.allreduce_s("nccl", p, n, a, b))  # noqa: E731
    assert nccl(4, 100e6) == pytest.approx(ring(4, 100e6))
    assert nccl(4096, 100e6) < 0.5 * ring(4096, 100e6)  # the ring's 2(p-1) latencies
    assert nccl(4096, 100e6) == pytest.approx(float(C.allreduce_s("two-tree", 4096, 100e6, a, b)))


def test_one_rank_communicates_nothing():
    for alg in C.ALGORITHMS:
        assert float(C.allreduce_s(alg, 1, 1e6, 1e-6, 1e-9)) == 0.0


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="allreduce='butterfly' is not known"):
        C.allreduce_s("butterfly", 4, 1, 1, 1)


# --- stragglers --------------------------------------------------------------------------------

def test_exponential_max_is_harmonic():
    mean, best = S.wait_s("exponential", np.array([1, 2, 10]), 0.1, 2.0)
    assert mean.tolist() == pytest.approx([0.0, 2.0 * 0.5, 2.0 * (sum(1 / i for i in range(1, 11)) - 1)])
    assert (best <= mean + 1e-12).all()


def test_normal_expected_maximum_matches_simulation():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((20000, 100)).max(1).mean()
    mean, _ = S.wait_s("normal", 100, 1.0, 1.0)
    assert float(mean) == pytest.approx(sim, rel=0.02)


@pytest.mark.parametrize("lam, n", [(0.3, 10), (5.0, 100), (50.0, 1000), (300.0, 64)])
def test_detour_maximum_matches_simulation(lam, n):
    """OS-noise detours: the slowest of n nodes, each hit by Poisson(rate x compute) detours,
    against a Monte Carlo draw (exact CDF below 200 expected detours, normal above)."""
    rng = np.random.default_rng(1)
    sim = rng.poisson(lam, (4000, n)).max(1)
    mean, best = S.poisson_max(np.array([lam]), np.array([float(n)]))
    assert mean[0] == pytest.approx(sim.mean(), rel=0.01, abs=0.03)
    assert abs(best[0] - np.quantile(sim, S.PEAK_QUANTILE)) <= 1.0


def test_detour_wait_grows_with_nodes_and_compute():
    d, f = 25e-6, 1000.0  # 25 us detours at 1 kHz
    waits = [float(S.wait_s("detour", n, 0.1, d, rate_hz=f)[0]) for n in (1, 16, 1024, 65536)]
    assert waits[0] == pytest.approx(0.0, abs=1e-12)
    assert waits == sorted(waits) and waits[-1] > waits[1] > 0
    longer = float(S.wait_s("detour", 1024, 1.0, d, rate_hz=f)[0])
    assert longer > waits[2]
    absolute = float(S.wait_s("detour", 1, 0.1, d, absolute=True, rate_hz=f)[0])
    assert absolute == pytest.approx(d * f * 0.1, rel=0.01)  # one node: the mean itself
    with pytest.raises(UserError, match="spends 602% of the time in detours"):
        SC.load("cpu-epyc-hdr-hep", ["cluster.straggler='detour'"])  # the preset's 5.8 ms
    with pytest.raises(UserError, match="straggler_rate_hz=0 is out of range"):
        SC.load("cpu-epyc-hdr-hep", ["cluster.straggler='detour'", "cluster.straggler_rate_hz=0",
                                     "cluster.straggler_scale=25e-6"])
    s, _ = SC.load("cpu-epyc-hdr-hep", ["cluster.straggler='detour'",
                                        "cluster.straggler_rate_hz=1000",
                                        "cluster.straggler_scale=25e-6"])
    assert predict(s)["breakdown"]["straggler_s"] > 0


def test_detour_default_is_the_published_osnoise_measurement():
    """Unset, a detour's rate and duration are osnoise's example, pooled over its 4 CPUs:
    1,139,012 us of noise in 220,572 interferences over 4 x 53.1 s."""
    rate_hz, detour_s = S.detour_default()
    assert rate_hz == pytest.approx(220572 / (4 * 53.1))
    assert detour_s == pytest.approx(1139012e-6 / 220572)
    assert rate_hz * detour_s == pytest.approx(1139012e-6 / (4 * 53.1))  # 0.54% of the time
    raw, _ = SC.read_raw("cpu-epyc-hdr-hep")
    raw["cluster"].pop("straggler_scale")
    raw["cluster"]["straggler"] = "detour"
    c = SC.validate(raw)["cluster"]
    assert (c["straggler_rate_hz"].nominal, c["straggler_scale"].nominal) == (rate_hz, detour_s)
    raw["cluster"]["straggler"] = "exponential"  # other distributions: no delay unless given
    assert SC.validate(raw)["cluster"]["straggler_scale"].nominal == 0.0


def test_norm_ppf():
    from statistics import NormalDist

    u = np.array([1e-10, 0.01, 0.3, 0.5, 0.9, 0.999999])
    ref = [NormalDist().inv_cdf(x) for x in u]
    assert S.norm_ppf(u) == pytest.approx(ref, abs=1e-8)


# --- properties of the throughput model --------------------------------------------------------

configs = st.tuples(st.sampled_from(["sync", "async", "hybrid"]), st.integers(0, 12),
                    st.integers(0, 6), st.integers(1, 16), st.integers(1, 64))


def _cfg(c):
    strat, lw, lg, ps, b = c
    w = 2**lw
    g = min(2**lg, w)
    return dict(strategy=strat, workers=w, groups=g, servers=ps, batch=b)


@settings(max_examples=200, deadline=None)
@given(c=configs, alg=st.sampled_from(C.ALGORITHMS), half=st.floats(0, 64),
       scale=st.floats(0, 0.05), dist=st.sampled_from(S.DISTRIBUTIONS))
def test_efficiency_at_most_one(c, alg, half, scale, dist):
    inp = inputs(allreduce=alg, half=half, straggler=dist,
                 straggler_scale=scale if dist == "exponential" else scale * 10)
    r = evaluate(inp, **_cfg(c))
    assert float(r["efficiency"]) <= 1 + 1e-12
    assert float(r["step_time_s"]) >= float(r["compute_s"])
    assert float(r["peak_throughput_flops"]) >= float(r["throughput_flops"]) * (1 - 1e-12)


@settings(max_examples=200, deadline=None)
@given(c=configs, alg=st.sampled_from(C.ALGORITHMS), f=st.floats(1.0, 100.0),
       msgs=st.sampled_from(["fused", "per-blob"]), overlap=st.booleans())
def test_more_bandwidth_or_less_latency_never_slows(c, alg, f, msgs, overlap):
    cfg = _cfg(c)
    base = inputs(allreduce=alg, messages=msgs, overlap=overlap)
    t0 = float(evaluate(base, **cfg)["step_time_s"])
    faster_bw = inputs(allreduce=alg, messages=msgs, overlap=overlap,
                       link_bandwidth_Bps=base.link_bandwidth_Bps * f)
    lower_lat = inputs(allreduce=alg, messages=msgs, overlap=overlap,
                       link_latency_s=base.link_latency_s / f)
    assert float(evaluate(faster_bw, **cfg)["step_time_s"]) <= t0 * (1 + 1e-12)
    assert float(evaluate(lower_lat, **cfg)["step_time_s"]) <= t0 * (1 + 1e-12)


@given(b=st.integers(1, 256), half=st.floats(0, 32))
def test_sync_on_one_node_is_the_node_rate(b, half):
    inp = inputs(half=half)
    r = evaluate(inp, "sync", 1, 1, 0, b)
    assert float(r["throughput_flops"]) == pytest.approx(float(inp.rate(b)), rel=1e-12)
    assert float(r["efficiency"]) == pytest.approx(1.0)


@given(lw=st.integers(0, 12), ps=st.integers(1, 8), b=st.integers(1, 64))
def test_hybrid_with_one_group_is_sync_plus_the_server_round_trip(lw, ps, b):
    inp = inputs(straggler="none")
    w = 2**lw
    sync = evaluate(inp, "sync", w, 1, 0, b)
    hyb = evaluate(inp, "hybrid", w, 1, ps, b)
    m = inp.param_bytes
    expect = float(sync["step_time_s"]) + 2 * (inp.link_latency_s + m / inp.link_bandwidth_Bps)
    assert float(hyb["step_time_s"]) == pytest.approx(expect, rel=1e-12)


def test_sharding_is_round_robin_by_blob():
    inp = inputs(blob_bytes=np.array([10.0, 1.0, 5.0, 2.0, 7.0]))
    # server 0: blobs 0, 2, 4 = 22; server 1: 1, 3 = 3
    assert inp.busiest_shard_bytes(np.array([2]))[0] == 22.0
    assert inp.busiest_shard_bytes(np.array([5]))[0] == 10.0


def test_servers_saturate_and_bound_the_step():
    inp = inputs(straggler="none", blob_bytes=np.array([1e9]))  # 1 GB model, one blob
    r = evaluate(inp, "async", 1024, 1024, 1, 8)
    busy = 2 * 1e9 / inp.link_bandwidth_Bps
    assert float(r["step_time_s"]) == pytest.approx(1024 * busy)


def test_node_rate_curve_interpolates_in_log_batch():
    rate = NodeRate(ref_flops=4.0, ref_batch=4, batches=np.array([1.0, 4.0, 16.0]),
                    flops=np.array([1.0, 4.0, 5.0]))
    assert rate(np.array([2.0, 8.0, 64.0])).tolist() == pytest.approx([2.5, 4.5, 5.0])


# --- scenarios ---------------------------------------------------------------------------------

def test_presets_load_and_predict():
    for name in SC.preset_names():
        if name == "localhost":  # built from this machine's measurements: tested below
            continue
        s, _ = SC.load(name)
        p = predict(s)
        for key in ("throughput_samples_per_s", "throughput_flops", "peak_throughput_flops",
                    "efficiency", "speedup", "step_time_s"):
            lo, hi = p["interval"][key]
            assert lo <= p[key] <= hi
        assert set(p["breakdown"]) == {"compute_s", "comm_s", "overlap_s", "update_s", "ps_s",
                                       "straggler_s",
                                       "io_s"}


def test_predict_json_cli(capsys):
    assert main(["predict", "cori-knl-hep", "--json", "--set", "training.groups=1",
                 "--set", "training.strategy='sync'", "--set", "training.param_servers=0"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["configuration"]["strategy"] == "sync"
    assert d["breakdown"]["ps_s"] == 0.0


def test_convergence_and_time_to_target():
    s, _ = SC.load("cori-knl-hep", ["convergence.target_loss=0.05", "convergence.s_min=1000",
                                     "convergence.b_noise=8528", "convergence.kappa=0.1"])
    p = predict(s)
    updates = 1000 * (1 + 8528 / 8528) * (1 + 0.1 * 8)
    assert p["steps_to_target"] == pytest.approx(updates)
    staging_s = 10_000_000 * 740e3 / 700e9  # the preset stages the data set once from scratch
    assert p["time_to_target_s"] == pytest.approx(updates * p["step_time_s"] / 9 + staging_s)


def test_sweep_is_vectorized_and_drops_invalid(tmp_path):
    s, _ = SC.load("cori-knl-hep")
    df = sweep(s, ["training.workers=1:2000", "training.groups=1,2,3",
                   "training.strategy=sync,hybrid"])
    assert df.attrs["dropped"] > 0
    assert (df["workers"] % df["groups"] == 0).all()
    assert (df[df.strategy == "sync"]["groups"] == 1).all()
    one = df[(df.strategy == "hybrid") & (df.workers == 1062) & (df.groups == 3)]
    p = predict(SC.load("cori-knl-hep", ["training.workers=1062", "training.groups=3"])[0])
    assert float(one["throughput_flops"].iloc[0]) == pytest.approx(p["throughput_flops"])


BAD = [
    ({"training": {"groups": 10}}, "training.groups=10 does not divide"),
    ({"training": {"groups": 20000}}, "exceeds training.workers"),
    ({"training": {"param_servers": 9688}}, "exceeds the 9688 devices"),
    ({"training": {"strategy": "elastic"}}, "training.strategy='elastic' is not allowed"),
    ({"training": {"workers": "many"}}, "training.workers: expected an integer"),
    ({"cluster": {"link_bandwidth_Bps": -1.0}}, "link_bandwidth_Bps=-1.0 is out of range"),
    ({"cluster": {"speed": 3}}, "unknown key cluster.speed"),
    ({"weather": {}}, "unknown section [weather]"),
    ({"training": {"global_batch": 1000, "batch_per_worker": None}}, "does not divide"),
    ({"cluster": {"link_latency_s": [3e-6, 1e-6]}}, "low > high"),
]


def _hep_raw():
    import tomllib
    from importlib import resources

    return tomllib.loads((resources.files("perfmodel.model.presets") / "cori-knl-hep.toml")
                         .read_text())


@pytest.mark.parametrize("patch,match", BAD)
def test_bad_scenarios_name_the_field(patch, match):
    raw = _hep_raw()
    for sec, kv in patch.items():
        raw.setdefault(sec, {})
        for k, v in kv.items():
            if v is None:
                raw[sec].pop(k, None)
            else:
                raw[sec][k] = v
    with pytest.raises(UserError, match=match.replace("[", r"\[").replace("(", r"\(")):
        SC.validate(raw, "test")


def test_missing_required_key():
    raw = _hep_raw()
    del raw["cluster"]["nodes"]
    with pytest.raises(UserError, match="cluster.nodes is required"):
        SC.validate(raw, "test")


def test_bad_scenario_file_cli(tmp_path, capsys):
    p = tmp_path / "s.toml"
    p.write_text("[cluster\nnodes = 3")
    assert main(["predict", str(p)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["predict", "no-such-preset"]) == 2
    assert main(["predict", "cori-knl-hep", "--set", "training.groups=7"]) == 2


def _mutate(raw: dict, rnd: random.Random) -> dict:
    raw = copy.deepcopy(raw)
    junk = [0, -1, 1, 2.5, -3.7, 1e30, "x", "", True, [1, 2], [2, 1], {"a": 1}, None, 10**9,
            "hybrid", "ring", [0.0, 1e-6], {"nominal": 1, "low": 0, "high": 2}]
    for _ in range(rnd.randint(1, 4)):
        sec = rnd.choice(list(SC.SCHEMA) + ["bogus"])
        key = rnd.choice(list(SC.SCHEMA.get(sec, {"k": 0})) + ["bogus"])
        v = rnd.choice(junk)
        if v is None:
            raw.get(sec, {}).pop(key, None)
        else:
            raw.setdefault(sec, {})[key] = v
    return raw


def test_fuzzed_scenarios_never_raise_a_traceback():
    rnd = random.Random(0)
    raw = _hep_raw()
    ok = 0
    for _ in range(2000):  # [convergence] has more keys to reject now: more tries
        m = _mutate(raw, rnd)
        try:
            s = SC.validate(m, "fuzz")
            p = predict(s)
            assert all(not (isinstance(v, float) and math.isnan(v)) for v in
                       (p["throughput_flops"], p["step_time_s"]))
            ok += 1
        except UserError:
            pass
    assert ok > 50  # the fuzzer does reach the model, not only the validator


def test_localhost_preset_needs_and_uses_measurements(tmp_path):
    from perfmodel.provenance import run_base
    from perfmodel.results import ResultsWriter, make_row

    missing = tmp_path / "none.csv"
    with pytest.raises(UserError, match="make localhost"):
        SC.load("localhost", [f'cluster.node_profile="{missing}"'])
    node = tmp_path / "node.csv"
    assert main(["node", "--image-size", "32", "--filters", "16", "--sweep", "1,2",
                 "--repeats", "1", "--threads", "1", "-o", str(node), "--no-progress"]) == 0
    micro = tmp_path / "micro.csv"
    base = run_base(1)
    ResultsWriter(micro).add([
        make_row(base, what="hockney", subject="p2p", metric=m, value=v, unit=u, stat="fit")
        for m, v, u in (("latency", 3e-6, "s"), ("bandwidth", 5e9, "B/s"))])
    s, _ = SC.load("localhost", [f'cluster.node_profile="{node}"',
                                 f'cluster.link_profile="{micro}"', "training.workers=1"])
    assert s["cluster"]["link_bandwidth_Bps"].nominal == 5e9
    p = predict(s)
    from perfmodel.results import read_results

    df = read_results(node)
    measured = df[(df.what == "step") & (df.metric == "flop_rate") & (df.batch == 8)]
    rate = measured["value"].median()
    # one worker: the measured node rate (FLOP per sample differs only by the update's FLOPs)
    assert p["throughput_flops"] == pytest.approx(rate, rel=0.01)


def test_paper_time_to_target_interval_and_mechanisms():
    """reproduce's hybrid-over-sync time to target: the nominal lies in its range over the
    assumption corners; more staleness cost (kappa) can only make hybrid look worse; S_min
    cancels in the ratio."""
    from perfmodel.judge.reproduce import time_to_target, with_values

    hep, _ = SC.load("cori-knl-hep")
    hep = with_values(hep, io__bytes_per_sample=0.0)  # no staging time: S_min alone sets the scale
    fixed = lambda **kv: with_values(hep, convergence__b_noise=1e4, convergence__gamma=0.0,  # noqa
                               **kv)
    r = time_to_target(hep)
    assert r["ratio_low"] <= r["ratio"] <= r["ratio_high"]
    assert len(r["time_s"]) == len(r["groups"])
    ratios = [time_to_target(fixed(convergence__kappa=k))["ratio"] for k in (0.0, 0.1, 1.0)]
    assert ratios[0] >= ratios[1] >= ratios[2]
    a = time_to_target(fixed(convergence__kappa=0.1, convergence__s_min=1e3))
    b = time_to_target(fixed(convergence__kappa=0.1, convergence__s_min=1e4))
    assert a["ratio"] == pytest.approx(b["ratio"]) and b["best_sync_s"] == pytest.approx(
        10 * a["best_sync_s"])


# --- effects at scale: taper, I/O, the node's rate -------------------------------------------

def test_taper_slows_collectives_past_a_group_only():
    from perfmodel.model.throughput import link_bandwidth_Bps

    inp = inputs(nodes=1000, bisection_Bps=2e12, group_nodes=100)  # share 2*2e12/1000 = 4 GB/s
    bw = link_bandwidth_Bps(inp, np.array([2, 100, 101, 1000]))
    assert bw.tolist() == [8e9, 8e9, 4e9, 4e9]
    fast = evaluate(inputs(), "sync", 500, 1, 0, 8)
    tapered = evaluate(inp, "sync", 500, 1, 0, 8)
    assert tapered["comm_s"] > fast["comm_s"]
    assert float(tapered["efficiency"]) < float(fast["efficiency"])
    # a fat-tree 2:1 above 100-node leaves: half the link past a leaf
    ft = inputs(taper=2.0, group_nodes=100)
    assert link_bandwidth_Bps(ft, np.array([100, 101])).tolist() == [8e9, 4e9]
    with pytest.raises(UserError, match="taper=0.5 is out of range"):
        SC.load("cpu-epyc-hdr-hep", ["cluster.taper=0.5"])
    # a bisection wider than the injection cannot speed anything up
    wide = evaluate(inputs(nodes=1000, bisection_Bps=1e15, group_nodes=100), "sync", 500, 1, 0, 8)
    assert float(wide["step_time_s"]) == pytest.approx(float(fast["step_time_s"]))


def test_io_prefetch_hides_reads_up_to_the_step():
    base = evaluate(inputs(), "sync", 64, 1, 0, 8)
    t = float(base["step_time_s"])
    # 64 workers x 8 samples x 1 MB over 10 GB/s: 51 ms, less than the step: hidden
    small = dict(io_bytes_per_sample=1e6, io_fs_Bps=10e9)
    hid = evaluate(inputs(**small), "sync", 64, 1, 0, 8)
    assert float(hid["step_time_s"]) == pytest.approx(max(t, 64 * 8 * 1e6 / 10e9))
    blocking = evaluate(inputs(io_prefetch=False, **small), "sync", 64, 1, 0, 8)
    assert float(blocking["step_time_s"]) == pytest.approx(t + 64 * 8 * 1e6 / 10e9)
    assert float(blocking["io_s"]) == pytest.approx(64 * 8 * 1e6 / 10e9)
    # the shared bandwidth is shared: 8x the workers read 8x the bytes in the same time
    big = evaluate(inputs(**small), "sync", 512, 1, 0, 8)
    assert float(big["io_s"]) > 0 and float(big["step_time_s"]) == pytest.approx(
        512 * 8 * 1e6 / 10e9)


def test_node_local_staging_is_paid_once():
    from perfmodel.model.convergence import Convergence

    conv = Convergence(s_min=1000, b_noise=100, ref_momentum=0.9, gamma=0, kappa=0,
                       source={"retune": True})
    kw = dict(io_bytes_per_sample=1e6, io_fs_Bps=10e9, convergence=conv)
    shared = evaluate(inputs(**kw), "sync", 512, 1, 0, 8)
    staged = evaluate(inputs(io_staging="node-local", io_local_Bps=2e9,
                             dataset_bytes=1e6 * 1e6, **kw), "sync", 512, 1, 0, 8)
    assert float(staged["step_time_s"]) < float(shared["step_time_s"])
    ttt = float(staged["steps_to_target"] * staged["step_time_s"])
    assert float(staged["time_to_target_s"]) == pytest.approx(ttt + 1e12 / 10e9)


def test_compute_fraction_slows_multi_worker_runs_only():
    one = evaluate(inputs(compute_fraction=0.9), "sync", 1, 1, 0, 8)
    assert float(one["compute_s"]) == pytest.approx(8 * 15e9 / 2e12)
    many = evaluate(inputs(compute_fraction=0.9), "sync", 64, 1, 0, 8)
    assert float(many["compute_s"]) == pytest.approx(8 * 15e9 / 2e12 / 0.9)
    assert 0 < float(many["efficiency"]) < float(evaluate(inputs(), "sync", 64, 1, 0, 8)[
        "efficiency"]) <= 1


def test_node_rate_shape_scales_the_stated_rate():
    s, _ = SC.load("cori-knl-hep", ["cluster.device_rate_shape=[[1, 0.29], [8, 1.0], [128, 1.41]]"])
    inp = SC.to_inputs(s)
    assert float(inp.rate(np.array([8]))[0]) == pytest.approx(1.90e12)
    assert float(inp.rate(np.array([1]))[0]) == pytest.approx(0.29 * 1.90e12)
    assert float(inp.rate(np.array([2048]))[0]) == pytest.approx(1.41 * 1.90e12)


def test_node_rate_shape_two_readings_are_corners():
    """A shape read two ways: the nominal takes reading A, and the corners take both."""
    s, _ = SC.load("cori-knl-hep", ["cluster.device_rate_shape=[[1, 0.29, 0.5], [8, 1, 1], "
                                    "[128, 1.41, 1.07]]"])
    rates = {round(float(SC.to_inputs(s, v).rate(np.array([1]))[0]) / 1.90e12, 9)
             for v in SC.corners(s)}
    assert rates == {0.29, 0.5}
    assert float(SC.to_inputs(s).rate(np.array([1]))[0]) == pytest.approx(0.29 * 1.90e12)
    one, _ = SC.load("cori-knl-hep", ["cluster.device_rate_shape=[[1, 0.29], [8, 1.0]]"])
    assert len(SC.corners(one)) == len(SC.corners(s)) // 2 + 1  # no reading corner


@pytest.mark.parametrize("override, message", [
    ("cluster.device_rate_shape=[[1, 0.3]]", "at least two"),
    ("cluster.device_rate_shape=[[1, 0.3, 0.4], [8, 1.0]]", "all alike"),
    ("cluster.device_rate_shape=[[1, 0.3], [1, 0.5]]", "appears twice"),
    ("cluster.compute_fraction=1.5", "compute_fraction=1.5 is out of range"),
    ("io.bytes_per_sample=1e6", "needs io.fs_bandwidth_Bps > 0"),
    ("io.staging='tape'", "io.staging='tape' is not allowed"),
])
def test_scale_effects_bad_input(override, message):
    with pytest.raises(UserError, match=message):
        SC.load("cpu-epyc-hdr-hep", [override])


def test_reproduce_scores_by_the_interval_rule(capsys):
    """A figure counts only when the published value is inside an interval no wider than the
    rule allows and the nominal meets the tolerance; fitted, derived, unscored and blocked
    figures never count; at most three parameters are fitted."""
    from perfmodel.judge.reproduce import Figure, reproduce, scored

    base = dict(key="k", what="w", published=10.0, unit="", status="held out", tolerance=0.05,
                kind="throughput")
    assert Figure(predicted=10.2, low=9.5, high=11.0, **base).passed
    assert not Figure(predicted=10.2, low=10.1, high=11.0, **base).passed    # outside
    assert not Figure(predicted=10.2, low=8.5, high=12.0, **base).passed     # too wide
    assert not Figure(predicted=10.8, low=9.5, high=11.0, **base).passed     # nominal off
    assert Figure(predicted=10.2, low=8.5, high=12.0, **{**base, "kind": "ratio"}).passed
    assert Figure(predicted=10.0, low=9.0, high=11.0,
                  **{**base, "status": "fitted"}).passed is None
    figs, extra = reproduce()
    assert len(extra["fitted"]) <= 3
    for f in scored(figs):
        assert f.low <= f.predicted <= f.high
    assert not any(f.key in ("hep_speedup", "climate_speedup", "climate_weak_eff")
                   for f in scored(figs))
    assert main(["reproduce", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["scored"] == len(scored(figs)) and 0 <= d["reproduced"] <= d["scored"]


def test_reproduce_under_overrides(capsys):
    """What-if runs: overrides reach both presets and the fit runs again under them."""
    from perfmodel.judge.reproduce import reproduce

    base = {f.key: f for f in reproduce()[0]}
    over, extra = reproduce(["cluster.overlap=true"])
    over = {f.key: f for f in over}
    assert over["climate_peak"].predicted > base["climate_peak"].predicted
    assert over["hep_peak"].predicted == pytest.approx(11.73, rel=1e-6)  # refitted
    assert main(["reproduce", "--json", "--set", "cluster.overlap=true"]) == 0
    assert json.loads(capsys.readouterr().out)["overrides"] == ["cluster.overlap=true"]
