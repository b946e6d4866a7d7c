"""perfmodel plan: search, Pareto front, constraints, explanations, Slurm; Kendall tau."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from perfmodel import plan as PL
from perfmodel.model import scenario as SC
from perfmodel.cli import main
from perfmodel.model.throughput import evaluate


def test_pareto_front_keeps_only_undominated():
    df = pd.DataFrame({"time_s": [1, 2, 3, 4], "node_hours": [10, 12, 5, 6]})
    front = PL.pareto(df)
    assert front.time_s.tolist() == [1, 3]


def test_duration_parsing():
    assert PL.parse_duration("90") == 90 and PL.parse_duration("2h") == 7200
    assert PL.parse_duration("1.5d") == 129600
    with pytest.raises(Exception, match="--deadline"):
        PL.parse_duration("soon")


def test_search_respects_constraints_and_finds_the_fastest():
    s, _ = SC.load_for_plan("cori-knl-hep", ["cluster.nodes=64"])
    df, facts = PL.search(s, PL.Target(epochs=1), 64, None, None, max_groups=8,
                          max_servers=4)
    assert facts["evaluated"] > 1000 and (df.nodes <= 64).all()
    assert df.time_s.is_monotonic_increasing
    best = df.iloc[0]
    p = PL.chosen_prediction(s, best)
    assert p["throughput_samples_per_s"] == pytest.approx(best.throughput_samples_per_s)


def test_plan_cli_json_and_slurm(tmp_path, capsys):
    script = tmp_path / "job.sh"
    front = tmp_path / "front.csv"
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=128", "--epochs", "1",
                 "--deadline", "2h", "--json", "--emit-slurm", str(script), "-o",
                 str(front)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["recommended"]["nodes"] <= 128 and d["recommended"]["time_s"] <= 7200
    assert d["why_not"] and d["pareto"]
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "perfmodel.harness" in text
    assert "--strategy " + d["recommended"]["strategy"] in text
    assert len(pd.read_csv(front)) == len(d["pareto"])
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=16", "--epochs", "1",
                 "--emit-slurm", str(script), "--command", "python train.py"]) == 0
    assert "srun -n" in script.read_text() and "python train.py" in script.read_text()


def test_time_interval_brackets_the_plan_and_pairs_the_extremes(capsys):
    """The recommendation's time over every corner: the nominal lies inside; the throughput's
    extremes pair with the epoch factor's (they depend on disjoint inputs); the CLI prints
    the same interval and says whether its high end meets the deadline."""
    s, _ = SC.load_for_plan("cori-knl-hep", ["cluster.nodes=256"])
    target = PL.Target(epochs=1)
    feasible, _ = PL.search(s, target, None, 3600.0, None)
    r = PL.recommend(feasible, 3600.0)
    pred = PL.chosen_prediction(s, r)
    lo, hi = PL.time_interval_s(s, r, target, pred)
    assert lo <= r.time_s <= hi and lo < hi
    # brute force: every corner, its epoch factor and its throughput together
    grid = {"strategy": [list(PL.STRATEGIES).index(r.strategy)], "workers": [r.workers],
            "groups": [r.groups], "batch": [r.batch_per_worker]}
    times = []
    for v in SC.corners(s):
        s2 = {sec: dict(vals) for sec, vals in s.items()}
        for (sec, key), x in v.items():
            if x is not None:
                s2[sec][key] = SC.Interval(x, x, x)
        s2["training"].update(strategy=r.strategy, workers=int(r.workers),
                              groups=int(r.groups), param_servers=int(r.param_servers),
                              batch_per_worker=int(r.batch_per_worker), global_batch=None)
        thr = float(np.asarray(evaluate(SC.to_inputs(s2, v), **SC.configuration(s2))
                               ["throughput_samples_per_s"]).reshape(-1)[0])
        times.append(s["workload"]["dataset_samples"] * PL.epoch_factor(s2, grid)[0] / thr)
    assert (min(times), max(times)) == pytest.approx((lo, hi), rel=1e-9)
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=256", "--epochs", "1",
                 "--deadline", "1h"]) == 0
    out = capsys.readouterr().out
    assert f"[{PL.format_duration(lo)}, {PL.format_duration(hi)}]" in out
    assert ("at the high end it misses" in out) == (hi > 3600)


@pytest.mark.parametrize("argv,match", [
    (["--epochs", "1", "--deadline", "1s"], "--deadline binds"),
    (["--epochs", "1", "--budget-node-hours", "0.0001"], "--budget-node-hours binds"),
    (["--epochs", "1", "--target-loss"], "exactly one target"),
    (["--target-loss", "--set", "convergence.s_min=0"], "target loss needs [convergence]"),
    (["--epochs", "-1"], "--epochs=-1.0"),
    (["--epochs", "1", "--deadline", "soon"], "--deadline='soon'"),
    (["--set", "workload.dataset_samples=0", "--set", "convergence.s_min=0"],
     "no target given and none to default to"),
])
def test_infeasible_or_bad_input_names_the_constraint(argv, match, capsys):
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=32", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_today_presets_predict():
    for name in ("cpu-epyc-hdr-hep", "perlmutter-gpu-hep"):
        s, _ = SC.load(name)
        from perfmodel.model.predict import predict

        p = predict(s)
        assert 0 < p["efficiency"] <= 1
        lo, hi = p["interval"]["throughput_flops"]
        assert lo < hi  # the assumed node rate is an interval


@pytest.mark.parametrize("b_noise", [64.0, 2000.0])
def test_epochs_charge_batches_past_the_noise_scale(b_noise):
    """With a stated B_noise, every configuration's time is charged E/E_min >= 1 + B/B_noise
    epochs for its update batch B; the recommendation never sits past 10 B_noise uncharged.
    Without B_noise the planner charges nothing (and says so)."""
    s, _ = SC.load_for_plan("cori-knl-hep", ["cluster.nodes=512", f"convergence.b_noise={b_noise}",
                                             "convergence.kappa=0", "convergence.gamma=0"])
    df, _ = PL.search(s, PL.Target(epochs=1), 512, None, None, max_groups=8, max_servers=4)
    samples = s["workload"]["dataset_samples"]
    factor = df.time_s * df.throughput_samples_per_s / samples
    assert (factor >= 1 + df.update_batch / b_noise - 1e-9).all()
    best = df.iloc[0]
    assert best.update_batch <= 10 * b_noise or factor.iloc[0] >= 11
    s0, _ = SC.load_for_plan("cori-knl-hep", ["cluster.nodes=512", "convergence.b_noise=0"])
    df0, _ = PL.search(s0, PL.Target(epochs=1), 512, None, None, max_groups=8, max_servers=4)
    f0 = df0.time_s * df0.throughput_samples_per_s / samples
    assert f0.to_numpy() == pytest.approx(1.0)
    assert df0.update_batch.iloc[0] > df.update_batch.iloc[0]


def test_without_a_target_the_plan_says_which_default_it_took(capsys):
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=32"]) == 0
    out = capsys.readouterr().out
    assert "target: 1 epoch(s) of 10,000,000 samples (the default" in out
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=32", "--set",
                 "workload.dataset_samples=0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["default_target"] and d["target"].startswith("the scenario's target loss")


def test_chunked_search_keeps_the_front_and_the_fastest(monkeypatch):
    """The search evaluates the grid in chunks and keeps the Pareto front, the fastest of each
    strategy and a sample: the same front and recommendation as one chunk of everything."""
    s, _ = SC.load_for_plan("cori-knl-hep", ["cluster.nodes=96"])
    whole, f1 = PL.search(s, PL.Target(epochs=1), None, 7200.0, None, max_groups=8,
                          max_servers=4)
    monkeypatch.setattr(PL, "CHUNK", 97)
    parts, f2 = PL.search(s, PL.Target(epochs=1), None, 7200.0, None, max_groups=8,
                          max_servers=4)
    assert f1 == f2 and f1["evaluated"] > 50 * 97 and f1["feasible"]
    cols = ["strategy", "workers", "groups", "param_servers", "batch_per_worker"]
    assert PL.pareto(whole)[cols].equals(PL.pareto(parts)[cols])
    assert PL.recommend(whole, 7200.0)[cols].equals(PL.recommend(parts, 7200.0)[cols])
    assert set(whole.strategy) == set(parts.strategy)
    for strat in set(whole.strategy):
        assert whole[whole.strategy == strat].time_s.min() == \
            parts[parts.strategy == strat].time_s.min()


def test_the_plan_respects_the_users_setup(tmp_path, capsys):
    """The issue's user: 64 x 8 GPUs, ResNet-50 at batch 256 under DDP. The batch is searched
    (and the grid's end named when it binds), sync may take every GPU, and the sbatch script
    asks for the GPUs, one rank each, with sane CPUs per task."""
    from pathlib import Path

    from perfmodel.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "gpu-ddp-resnet50.toml"
    job = tmp_path / "job.sh"
    # a noise scale of the scenario's own: no published batch limit of an optimizer applies
    assert main(["plan", str(example), "--epochs", "90", "--json", "--emit-slurm",
                 str(job), "--set", "convergence.b_noise=1e12"]) == 0
    import json

    plan = json.loads(capsys.readouterr().out)
    rec = plan["recommended"]
    assert rec["batch_per_worker"] == 256
    assert max(r["workers"] for r in plan["pareto"] if r["strategy"] == "sync") == 512
    lines = job.read_text().splitlines()
    for line in ("#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=8"):
        assert line in lines
    assert main(["plan", str(example), "--epochs", "1", "--batches", "0,2"]) == 2
    assert main(["plan", str(example), "--epochs", "1", "--batches", "64,512"]) == 0
    assert "largest batch searched" not in capsys.readouterr().out  # the user's own grid


EXAMPLE = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "examples"
              / "gpu-ddp-resnet50.toml")


def test_a_zoo_networks_epochs_grow_with_the_batch_as_published(capsys):
    from perfmodel import plan as PLN
    from perfmodel.cli import main
    from perfmodel.model import zoo_convergence as ZC

    lars = ZC.curve("resnet50", "lars")
    for batch, runs in ZC.RESNET50_LARS_RCP:  # the fit against each published point
        assert float(lars.epochs(batch)) == pytest.approx(np.mean(runs), rel=0.10)
    published = np.mean(ZC.RESNET50_LARS_RCP[-2][1]) / np.mean(ZC.RESNET50_LARS_RCP[0][1])
    assert float(lars.factor(65536) / lars.factor(1632)) == pytest.approx(published, rel=0.1)
    assert np.all(np.diff(lars.factor([256, 4096, 32768, 65536])) > 0)
    # the planner charges it: sync at 512 x 128 = 65,536 samples costs E(B)/E_min epochs
    s, _ = SC.load_for_plan(EXAMPLE)
    notes = PLN.apply_epoch_curve(s, "lars")
    assert any("rcps_resnet.json" in n for n in notes)
    grid = {"strategy": np.array([0]), "workers": np.array([512]), "groups": np.array([1]),
            "batch": np.array([128])}
    assert float(PLN.epoch_factor(s, grid)[0]) == pytest.approx(float(lars.factor(65536)))
    # SGD: the same epochs, but nothing above 8,192 (Goyal et al.): a constraint
    s, _ = SC.load_for_plan(EXAMPLE)
    PLN.apply_epoch_curve(s, "sgd")
    feasible, _ = PLN.search(s, PLN.Target(epochs=90), 16, None, None, batches=(64, 256))
    assert len(feasible) and (feasible.update_batch <= 8192).all()
    # the command prints the factor and its source
    assert main(["plan", EXAMPLE, "--epochs", "90", "--optimizer",
                 "lars", "--batches", "256", "--max-nodes", "8"]) == 0
    out = capsys.readouterr().out
    assert "rcps_resnet.json" in out and "epochs charged for the update batch" in out
    # a zoo net without a published curve says so
    s, _ = SC.load_for_plan(EXAMPLE, ['workload.net="vgg16"'])
    assert "no published epochs-against-batch curve" in PLN.apply_epoch_curve(s, None)[0]


def test_cosmoflows_curve_is_fitted_on_its_reference_runs_and_bounded_by_them():
    from perfmodel.model import zoo_convergence as ZC

    c = ZC.curve("cosmoflow", "sgd")
    assert c.max_batch == max(b for b, _ in ZC.COSMOFLOW_SGD_RCP) == 1024
    means = [np.mean(r) for _, r in ZC.COSMOFLOW_SGD_RCP]
    # a rough fit: within 5.5 epochs of every published mean, and growing past the middle
    assert all(abs(float(c.epochs(b)) - m) < 5.5 for (b, _), m in zip(ZC.COSMOFLOW_SGD_RCP,
                                                                       means))
    assert float(c.epochs(1024)) == pytest.approx(means[-1], rel=0.05)
    assert c.b_crit.low <= c.b_crit.nominal <= c.b_crit.high
