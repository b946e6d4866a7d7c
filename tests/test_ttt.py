"""perfmodel published --ttt: published time to train against the convergence and throughput
models."""

from __future__ import annotations

import json
import re

import pytest

from perfmodel.cli import main
from perfmodel.judge import ttt as T
from perfmodel.model import zoo_convergence as ZC
from perfmodel.ui import UserError


def test_the_set_is_mlperf_v21_and_later_and_each_case_is_consistent():
    paths = sorted(T.case_dir().glob("*.toml"))
    assert len(paths) >= 15
    for p in paths:
        case, s = T.load_case(p)
        round_ = tuple(int(x) for x in re.search(r"v(\d+)\.(\d+)", case.source).groups())
        assert round_ >= (2, 1), f"{p.name}: rounds v0.7 to v2.0 are held out"
        assert case.runs >= 1 and case.epochs > 0 and case.time_to_train_s > case.eval_s


def test_a_prediction_is_the_curves_epochs_over_the_models_rate_plus_evaluation():
    case = T.predict_case(*T.load_case(sorted(T.case_dir().glob("*.toml"))[0]))
    curve = ZC.curve("resnet50", case.optimizer)
    assert case.predicted_epochs == pytest.approx(float(curve.epochs(case.global_batch)))
    assert case.predicted_s == pytest.approx(case.predicted_epochs * T.IMAGENET_TRAIN_SAMPLES
                                             / case.throughput_samples_per_s + case.eval_s)


def test_a_case_that_disagrees_with_its_scenario_is_an_error(tmp_path):
    src = sorted(T.case_dir().glob("*.toml"))[0].read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(re.sub(r"global_batch = \d+", "global_batch = 7", src))
    with pytest.raises(UserError, match="case.global_batch=7"):
        T.load_case(bad)
    bad.write_text(src.replace('optimizer = "lars"', 'optimizer = "adam"'))
    with pytest.raises(UserError, match="case.optimizer"):
        T.load_case(bad)


def test_the_command_gives_the_figures(capsys):
    assert main(["published", "--ttt", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "time-to-train" and out["case_count"] == len(out["cases"]) >= 15
    for k in ("epochs_median_abs_error", "time_median_abs_error", "time_kendall_tau"):
        assert 0 <= abs(out[k]) < 10
    assert all(c["source"] and c["quote"] for c in out["cases"])


def test_a_result_log_gives_the_values_a_case_states(tmp_path):
    from perfmodel.judge import mlperf_logs as M

    def line(key, value=None, t=0, **meta):
        return ":::MLLOG " + json.dumps(dict(key=key, value=value, time_ms=t, metadata=meta))

    log = "\n".join([line("global_batch_size", 3200), line("opt_name", "lars"),
                     line("run_start", t=1000), line("eval_start", t=5000, epoch_num=31),
                     line("eval_stop", t=5500, epoch_num=31),
                     line("eval_accuracy", 0.751, t=5500, epoch_num=31),
                     line("eval_start", t=9000, epoch_num=35), line("eval_stop", t=9250),
                     line("eval_accuracy", 0.7593, t=9250, epoch_num=35),
                     line("run_stop", t=10000, status="success"), "noise"])
    r = M.parse(log)
    assert (r["gbs"], r["opt"], r["epochs"], r["ttt_s"], r["eval_s"]) == \
        (3200, "lars", 36, 9.0, 0.75)
    aborted = M.parse(log.replace('"success"', '"aborted"'))
    s = M.summarize([r, r, aborted])
    assert s["runs"] == 2 and s["epochs"] == 36


def test_a_result_log_gives_the_training_rate_of_its_steady_epochs(capsys, tmp_path):
    from perfmodel.judge import mlperf_logs as M

    def line(key, t, e):
        return ":::MLLOG " + json.dumps(dict(key=key, value=None, time_ms=t,
                                             metadata=dict(epoch_num=e)))

    # epochs of 10, 8, 6 s (warm-up, left out), then 4, 5 and 4 s
    durations, t, lines = (10, 8, 6, 4, 5, 4), 0, []
    for e, d in enumerate(durations):
        lines += [line("epoch_start", t, e), line("epoch_stop", t + 1000 * d, e)]
        t += 1000 * d
    r = M.parse("\n".join(lines))
    assert r["samples_per_s"] == pytest.approx(M.IMAGENET_TRAIN / 4)
    assert M.parse("")["samples_per_s"] is None
    assert M.main([str(tmp_path / "none.txt")]) == 2 and M.main(["--help"]) == 2
    assert "cannot read" in capsys.readouterr().err
