"""The MPI harness under mpiexec with 2, 3 and 4 ranks: equivalences, no lost update,
repeatability, faults and bad arguments. (Functional runs: ranks may exceed the cores.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from perfmodel.harness.config import Straggler
from perfmodel.results import read_results

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (install the mpi extra)")

SIZE, BATCH, STEPS = 16, 2, 3
COMMON = ["--net", "hep", "--image-size", str(SIZE), "--filters", "4", "--steps", str(STEPS),
          "--warmup", "0", "--no-shuffle", "--lr", "0.05", "--momentum", "0.9",
          "--weight-decay", "0.001", "--watchdog-s", "60", "--dropout", "0"]


def mpirun(n: int, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", "-m",
                           "perfmodel.harness", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _shard(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x)
        f.create_dataset("y", data=y)
        f.attrs.update(net="hep", samples=len(x), image_size=SIZE)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Shards for up to 4 ranks, and a merged shard holding, step by step, what N ranks see
    together (so 1 rank at N x batch sees the same samples in one batch)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    xs = [rng.random((STEPS * BATCH, 3, SIZE, SIZE), dtype=np.float32) for _ in range(4)]
    ys = [rng.integers(0, 2, STEPS * BATCH) for _ in range(4)]
    for r in range(4):
        _shard(root / "ranks" / f"shard_{r:05d}.h5", xs[r], ys[r])
    merged = {}
    for n in (2, 3, 4):
        mx = np.concatenate([np.concatenate([xs[r][t * BATCH:(t + 1) * BATCH] for r in range(n)])
                             for t in range(STEPS)])
        my = np.concatenate([np.concatenate([ys[r][t * BATCH:(t + 1) * BATCH] for r in range(n)])
                             for t in range(STEPS)])
        _shard(root / f"merged{n}" / "shard_00000.h5", mx, my)
        merged[n] = root / f"merged{n}"
    return root / "ranks", merged


def _weights(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _close(a: dict, b: dict, rtol=2e-4, atol=2e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_sync_n_ranks_equals_one_rank_with_n_times_the_batch(data, tmp_path, n):
    ranks, merged = data
    r = mpirun(n, COMMON + ["--strategy", "sync", "--data", str(ranks), "--batch", str(BATCH),
                            "--save-weights", str(tmp_path / "n.npz")])
    assert r.returncode == 0, r.stderr
    r = mpirun(1, COMMON + ["--strategy", "sync", "--data", str(merged[n]), "--batch",
                            str(n * BATCH), "--save-weights", str(tmp_path / "one.npz")])
    assert r.returncode == 0, r.stderr
    _close(_weights(tmp_path / "n.npz"), _weights(tmp_path / "one.npz"))


@pytest.mark.parametrize("n", [2, 3])
def test_hybrid_one_group_one_server_equals_sync(data, tmp_path, n):
    ranks, _ = data
    base = COMMON + ["--data", str(ranks), "--batch", str(BATCH)]
    r = mpirun(n, base + ["--strategy", "sync", "--save-weights", str(tmp_path / "s.npz")])
    assert r.returncode == 0, r.stderr
    r = mpirun(n + 1, base + ["--strategy", "hybrid", "--groups", "1", "--param-servers", "1",
                              "--save-weights", str(tmp_path / "h.npz")])
    assert r.returncode == 0, r.stderr
    _close(_weights(tmp_path / "s.npz"), _weights(tmp_path / "h.npz"))


def test_async_one_worker_one_server_equals_sync(data, tmp_path):
    ranks, _ = data
    base = COMMON + ["--data", str(ranks), "--batch", str(BATCH)]
    r = mpirun(1, base + ["--strategy", "sync", "--save-weights", str(tmp_path / "s.npz")])
    assert r.returncode == 0, r.stderr
    r = mpirun(2, base + ["--strategy", "async", "--param-servers", "1",
                          "--save-weights", str(tmp_path / "a.npz")])
    assert r.returncode == 0, r.stderr
    _close(_weights(tmp_path / "s.npz"), _weights(tmp_path / "a.npz"))


def test_no_update_is_lost_and_staleness_is_measured(data, tmp_path):
    ranks, _ = data
    out = tmp_path / "r.csv"
    r = mpirun(4, COMMON + ["--strategy", "async", "--param-servers", "2", "--data", str(ranks),
                            "--batch", str(BATCH), "--steps", "6", "--output", str(out)])
    assert r.returncode == 0, r.stderr
    df = read_results(out)
    ps = df[df.what == "ps"].set_index("metric")["value"]
    # 2 workers x 6 steps x 2 servers shard updates, every one applied
    assert ps["updates_pushed"] == ps["updates_applied"] == 2 * 6 * 2
    st = df[(df.what == "staleness") & (df.stat == "median")]
    assert len(st) == 1 and st["max"].iloc[0] >= 0
    assert (df[df.what == "run"]["strategy"] == "async").all()
    assert (df["ranks"] == 4).all() and (df["mpi_library"].str.len() > 0).all()


def test_hybrid_two_groups_records_everything(data, tmp_path):
    ranks, _ = data
    out = tmp_path / "r.csv"
    r = mpirun(3, COMMON + ["--strategy", "hybrid", "--groups", "2", "--param-servers", "1",
                            "--data", str(ranks), "--batch", str(BATCH), "--output", str(out),
                            "--straggler", "exponential:0.01"])
    assert r.returncode == 0, r.stderr
    df = read_results(out)
    it = df[df.what == "iteration"]
    assert set(it["phase"]) == {"io", "compute", "straggle", "wait", "comm", "ps", "iteration"}
    assert sorted(set(it["rank"])) == [0, 1]
    assert (df[df.what == "loss"]["value"] > 0).all()
    assert (df["straggler"] == "exponential:0.01").all()


def test_seeded_runs_repeat(data, tmp_path):
    ranks, _ = data
    base = COMMON + ["--strategy", "sync", "--data", str(ranks), "--batch", str(BATCH)]
    for name in ("a", "b"):
        r = mpirun(2, base + ["--save-weights", str(tmp_path / f"{name}.npz")])
        assert r.returncode == 0, r.stderr
    a, b = _weights(tmp_path / "a.npz"), _weights(tmp_path / "b.npz")
    for k in a:
        assert np.array_equal(a[k], b[k])


@pytest.mark.parametrize("fault", ["raise:1:1", "kill:1:1", "hang:1:1"])
def test_a_failing_rank_ends_the_job(data, fault):
    ranks, _ = data
    t = time.time()
    r = mpirun(3, COMMON + ["--strategy", "sync", "--data", str(ranks), "--batch", str(BATCH),
                            "--steps", "50", "--inject-fault", fault, "--watchdog-s", "5"],
               timeout=60)
    assert r.returncode != 0
    assert time.time() - t < 30 + 10  # start-up of 3 interpreters included
    if fault.startswith("hang"):
        assert "no progress" in r.stderr


@pytest.mark.parametrize("args,match", [
    (["--strategy", "hybrid", "--groups", "5", "--param-servers", "1"], "groups=5"),
    (["--strategy", "async", "--param-servers", "3"], "param_servers=3"),
    (["--strategy", "elastic"], "strategy='elastic'"),
])
def test_bad_arguments_exit_2_before_work(data, args, match):
    ranks, _ = data
    r = mpirun(3, ["--data", str(ranks)] + args, timeout=60)
    assert r.returncode == 2
    assert match in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("spec", ["exponential:0.02", "uniform:0.01:0.05", "constant:0.03"])
def test_straggler_draws_follow_the_law(spec):
    """Stratified delays: one draw per equal-probability stratum, so a short run's delays have
    the law's mean (30 independent exponential draws scatter by 18%), yet they are random in
    order, differ between seeds, and every stratum is hit once."""
    s = Straggler.parse(spec)
    mean = {"exponential": 0.02, "uniform": 0.03, "constant": 0.03}[s.kind]
    rng = np.random.default_rng(1)
    means = [s.draws(30, rng).mean() for _ in range(200)]
    assert np.median(np.abs(np.array(means) / mean - 1)) < 0.03
    d = s.draws(50, np.random.default_rng(2))
    if s.kind != "constant":
        assert not np.all(np.diff(d) >= 0)  # shuffled
        strata = np.floor(50 * (1 - np.exp(-d / 0.02)) if s.kind == "exponential"
                          else 50 * (d - 0.01) / 0.04).astype(int)
        assert sorted(strata) == list(range(50))
        assert not np.allclose(d, s.draws(50, np.random.default_rng(3)))
    assert (Straggler.parse("").draws(5, rng) == 0).all()
