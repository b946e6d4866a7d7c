"""The sbatch scripts of `perfmodel scale --emit-slurm` and `perfmodel plan --emit-slurm`,
submitted to a real one-node Slurm on localhost (tests/slurm_cluster.py, Debian's slurm-wlm):
with srun (PMI2, the MPICH wheel) and with mpiexec inside the allocation, the results carry
the job; a failing launch ends the job non-zero with its reason in the job's output and in a
failure row of the results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from perfmodel.cli import main
from perfmodel.results import read_results

from . import slurm_cluster

BIN = Path(sys.executable).parent
SMALL = ["--net", "hep", "--image-size", "16", "--filters", "4", "--dropout", "0"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = slurm_cluster.install()
    if why:
        pytest.skip(reason=why)
    d = tmp_path_factory.mktemp("slurm")
    try:
        env = slurm_cluster.start(d)
    except RuntimeError as e:  # a cluster that cannot start here is a failure, not a skip
        pytest.fail(str(e))
    # the jobs find this environment's python, perfmodel and mpiexec first on their PATH
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    yield env
    slurm_cluster.stop(d)


def sbatch(script: Path, env: dict, cwd: Path) -> tuple[int, str, str]:
    """Submit and wait; (exit code, job id, the job's output)."""
    out = cwd / "job.out"
    r = subprocess.run(["sbatch", "--wait", f"--output={out}", str(script)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=600)
    job = re.search(r"Submitted batch job (\d+)", r.stdout)
    assert job, r.stdout + r.stderr
    return r.returncode, job.group(1), out.read_text() if out.exists() else ""


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_scale_script_runs_under_slurm(cluster, tmp_path, launcher):
    script, results = tmp_path / "scale.sh", tmp_path / "scale.csv"
    assert main(["scale", *SMALL, "--strategies", "sync,async", "--workers", "1",
                 "--batch", "2", "--steps", "3", "--warmup", "1", "--samples", "32",
                 "--val-samples", "8", "--data", str(tmp_path / "data"), "-o", str(results),
                 "--emit-slurm", str(script), "--slurm-cpus-per-task", "1",
                 "--slurm-ranks-per-node", "2", "--slurm-launcher", launcher]) == 0
    rc, job, out = sbatch(script, cluster, tmp_path)
    assert rc == 0, out
    df = read_results(results)
    runs = df[(df.what == "run") & (df.metric == "sample_rate") & (df.stat == "sustained")]
    assert sorted(runs.strategy) == ["async", "sync"] and sorted(runs.ranks) == [1, 2]
    assert (df.job == f"slurm:{job}@{os.uname().nodename.split('.')[0]}").all(), \
        df.job.unique()
    assert (df.what != "failure").all()


def test_plan_script_runs_under_slurm(cluster, tmp_path):
    script, results = tmp_path / "plan.sh", tmp_path / "plan.csv"
    assert main(["data", *SMALL[:4], "--samples", "32", "--shards", "2", "--out",
                 str(tmp_path / "data")]) == 0
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=1", "--set",
                 "workload.image_size=16", "--set", "workload.filters=4", "--epochs", "1",
                 "--threads-per-rank", "1", "--emit-slurm", str(script)]) == 0
    env = dict(cluster, PERFMODEL_DATA=str(tmp_path / "data"), PERFMODEL_STEPS="3",
               PERFMODEL_OUTPUT=str(results))
    rc, job, out = sbatch(script, env, tmp_path)
    assert rc == 0, out
    df = read_results(results)
    assert (df.what == "run").any() and df.job.str.startswith(f"slurm:{job}@").all()


def test_a_failing_job_exits_nonzero_with_its_reason(cluster, tmp_path):
    """The harness refuses a data folder without shards: the job fails with the harness's
    exit code, the reason reaches the job's output and a failure row of the results."""
    script, results = tmp_path / "plan.sh", tmp_path / "plan.csv"
    (tmp_path / "empty").mkdir()
    assert main(["plan", "cori-knl-hep", "--set", "cluster.nodes=1", "--set",
                 "workload.image_size=16", "--set", "workload.filters=4", "--epochs", "1",
                 "--threads-per-rank", "1", "--emit-slurm", str(script)]) == 0
    env = dict(cluster, PERFMODEL_DATA=str(tmp_path / "empty"), PERFMODEL_STEPS="3",
               PERFMODEL_OUTPUT=str(results))
    rc, job, out = sbatch(script, env, tmp_path)
    assert rc != 0
    assert "no shard_*.h5 there" in out and "launch failed with exit code" in out
    fail = read_results(results)
    fail = fail[fail.what == "failure"]
    assert len(fail) == 1 and fail.value.iloc[0] != 0
    assert "no shard_*.h5 there" in fail.note.iloc[0]
    assert fail.job.iloc[0].startswith(f"slurm:{job}@")
