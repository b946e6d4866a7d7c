"""perfmodel data, scale (through mpiexec), --emit-slurm and validate, end to end in small."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from perfmodel.cli import main
from perfmodel.results import read_results
from tests.test_harness import MPIEXEC


def test_data_writes_seeded_shards(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "--net", "hep", "--image-size", "16", "--samples", "40", "--shards",
                 "3", "--out", str(out)]) == 0
    files = sorted(out.glob("shard_*.h5"))
    assert len(files) == 3
    with h5py.File(files[0]) as f:
        x, y = f["x"][:], f["y"][:]
        assert x.shape == (14, 3, 16, 16) and set(np.unique(y)) <= {0, 1}
        rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=(0, 2, 3)))
        assert rms == pytest.approx(1.0, rel=1e-4) and f.attrs["normalization"] == "rms"
        assert (x >= 0).all() and not ((x != 0) & (np.abs(x) < 1e-30)).any()  # no denormals
    again = tmp_path / "e"
    main(["data", "--net", "hep", "--image-size", "16", "--samples", "40", "--shards", "3",
          "--out", str(again)])
    with h5py.File(files[0]) as f, h5py.File(again / files[0].name) as g:
        assert np.array_equal(f["x"][:], g["x"][:])
    assert main(["data", "--net", "climate", "--image-size", "64", "--samples", "4",
                 "--shards", "1", "--out", str(tmp_path / "c")]) == 0
    with h5py.File(tmp_path / "c" / "shard_00000.h5") as f:
        assert f["x"].shape == (4, 16, 64, 64) and f["box"].shape == (4, 4, 1, 1)


@pytest.mark.parametrize("argv,match", [
    (["data", "--net", "resnet", "--out", "x"], "--net='resnet'"),
    (["data", "--samples", "0", "--out", "x"], "--samples=0"),
    (["scale", "--strategies", "elastic"], "'elastic' is not a strategy"),
    (["scale", "--strategies", "hybrid", "--workers", "3", "--groups", "2"], "nothing to run"),
    (["scale", "--workers", "a"], "--workers='a'"),
    (["scale", "--straggler", "gamma:1"], "unknown distribution 'gamma'"),
    (["scale", "--threads", "99"], "--threads=99"),
])
def test_bad_arguments_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_emit_slurm(tmp_path, capsys):
    script = tmp_path / "job.sh"
    assert main(["scale", "--workers", "1,4", "--groups", "2", "--emit-slurm", str(script),
                 "--slurm-cpus-per-task", "32"]) == 0
    text = script.read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH --nodes=5" in text
    assert "#SBATCH --cpus-per-task=32" in text
    assert text.count("srun -n") == 5  # sync 1,4; async 1,4; hybrid 4x2 (1x2 is skipped)
    assert "--strategy hybrid" in text and "--groups 2" in text and "python -m mpi4py" in text


def test_dry_run_lists_commands(capsys):
    assert main(["scale", "--strategies", "sync", "--workers", "1,2", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all("-m perfmodel.harness" in line for line in out)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (install the mpi extra)")
def test_scale_then_validate_end_to_end(tmp_path, capsys):
    out = tmp_path / "scale.csv"
    node = tmp_path / "node.csv"
    data = tmp_path / "data"
    common = ["--filters", "4", "--image-size", "16", "--batch", "4", "--data", str(data),
              "--samples", "64", "--steps", "3", "--warmup", "1", "-o", str(out),
              "--no-progress"]
    assert main(["scale", "--micro", "--strategies", "sync,async", "--workers", "1", *common]
                ) == 0
    df = read_results(out)
    runs = df[(df.what == "run") & (df.metric == "sample_rate")]
    assert set(runs["strategy"]) == {"sync", "async"}
    assert (df[df.what == "hockney"]["value"] > 0).all()
    assert main(["node", "--image-size", "16", "--filters", "4", "--batch", "4", "--sweep",
                 "1,2", "--repeats", "2", "--threads", "1", "-o", str(node), "--no-progress"]
                ) == 0
    capsys.readouterr()
    assert main(["validate", "--node", str(node), "--scale", str(out), "-o",
                 str(tmp_path / "err.csv")]) == 0
    text = capsys.readouterr().out
    assert "sync" in text and "async" in text and "%" in text
    err = read_results(tmp_path / "err.csv")
    assert set(err["what"]) == {"prediction", "error"}
