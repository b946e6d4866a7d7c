"""The scenario reference (docs/scenario.md), perfmodel init and the examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel import __version__
from perfmodel.cli import main
from perfmodel.model import reference as REF
from perfmodel.model import scenario as SC
from perfmodel.model.predict import predict

ROOT = Path(__file__).resolve().parents[1]


def test_every_key_of_the_schema_is_documented_and_nothing_else():
    keys = {(s, k) for s, ks in SC.SCHEMA.items() for k in ks}
    assert set(REF.DOC) == keys


def test_the_docs_reference_matches_the_schema():
    assert (ROOT / "docs" / "scenario.md").read_text() == REF.markdown(), \
        "docs/scenario.md is stale: perfmodel init /tmp/x.toml --force --reference " \
        "docs/scenario.md"


@pytest.mark.parametrize("preset", [p for p in SC.preset_names() if p != "localhost"])
def test_init_writes_a_scenario_that_predicts_as_its_preset(preset, tmp_path):
    out = tmp_path / "my.toml"
    assert main(["init", str(out), "--from", preset]) == 0
    text = out.read_text()
    assert all(f"{k} =" in text for ks in SC.SCHEMA.values() for k in ks)  # every key listed
    mine, base = predict(SC.load(str(out))[0]), predict(SC.load(preset)[0])
    assert mine["throughput_samples_per_s"] == pytest.approx(base["throughput_samples_per_s"],
                                                             rel=1e-9)
    assert main(["init", str(out)]) == 2  # never overwrites without --force


def test_version_prints_one_line(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"perfmodel {__version__} (python ")


def test_a_path_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    """An output under a plain file (or anywhere the OS refuses) names the path, exit 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["init", str(blocker / "my.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"perfmodel init: error: {blocker}")  # the path the OS refused
    assert "Traceback" not in err


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.toml")),
                         ids=lambda p: p.name)
def test_examples_predict(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths in an example are the example's folder's
    p = predict(SC.load(str(example))[0])
    assert p["throughput_samples_per_s"] > 0 and 0 < p["efficiency"] <= 1


def test_a_report_of_a_scenario_predicts_only_and_stands_in_its_folder(tmp_path):
    out = tmp_path / "rep"
    assert main(["report", "--scenario", str(ROOT / "examples" / "gpu-ddp-resnet50.toml"),
                 "--epochs", "90", "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    for name in ("scenario_scaling.png", "step_timeline.png", "plan_pareto.png",
                 "scale_effects.png"):
        assert (out / name).stat().st_size > 1000 and f"src='{name}'" in html
    assert "http://" not in html and "https://" not in html
    assert main(["report", "--scenario", "perlmutter-gpu-hep", "--paper"]) == 2
