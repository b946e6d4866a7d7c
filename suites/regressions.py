"""The regression check a CI job runs: the asv suites at two commits, then exit 1 when any
benchmark got worse by more than ``--factor``.

Usage: ``python suites/regressions.py BASE HEAD [--factor 1.1] [--bench REGEX] [--machine M]``

Each commit is checked out into a temporary git worktree and benchmarked with this
environment's Python (asv ``--python=same``, no environment build and no network), the
worktree first on the benchmarks' path (asv's ``ASV_PYTHONPATH``) so its own ``perfmodel`` and ``kernels`` are the code
measured; both runs go to one results folder (``.asv/regressions``), and asv's comparison
(``asv compare --factor``, with its statistics) decides. ``make asv-regressions BASE=... HEAD=...``
calls it. Importing this module (asv imports every module of the benchmark folder) does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def _asv() -> str:
    found = shutil.which("asv", path=os.path.dirname(sys.executable)) or shutil.which("asv")
    if not found:
        raise SystemExit("asv is not installed (pip install asv)")
    return found


def run_at(rev: str, results: Path, machine: str, bench: str | None, env: dict,
           rounds: int = 4) -> None:
    """Benchmark commit ``rev`` from a worktree of it, into ``results``."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="perfmodel-asv-") as tmp:
        tree = Path(tmp) / "tree"
        _git("worktree", "add", "--detach", str(tree), sha)
        try:
            conf = json.loads((tree / "asv.conf.json").read_text())
            conf.update(repo=str(ROOT), benchmark_dir=str(tree / "suites"),
                        results_dir=str(results), html_dir=str(results.parent / "html-regr"),
                        env_dir=str(Path(tmp) / "env"))
            cfg = Path(tmp) / "asv.conf.json"
            cfg.write_text(json.dumps(conf))
            # asv drops PYTHONPATH from the benchmarks' environment and sets theirs from
            # ASV_PYTHONPATH: the worktree first, so its perfmodel and kernels are measured
            run_env = dict(env, ASV_PYTHONPATH=os.pathsep.join(
                [str(tree), *filter(None, [env.get("PYTHONPATH")])]))
            cmd = [_asv(), "run", "--python=same", "--machine", machine, "--set-commit-hash",
                   sha, "--config", str(cfg), "--attribute", f"rounds={rounds}",
                   *(["--bench", bench] if bench else [])]
            print(f"$ {' '.join(cmd)}", flush=True)
            r = subprocess.run(cmd, cwd=tree, env=run_env)
            if r.returncode:
                raise SystemExit(f"asv run at {rev} failed (exit {r.returncode})")
        finally:
            _git("worktree", "remove", "--force", str(tree))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="the reference commit (e.g. origin/main)")
    p.add_argument("head", help="the commit under test (e.g. HEAD)")
    p.add_argument("--factor", type=float, default=1.1, help="a benchmark worse by more than "
                   "this ratio (and significantly, by asv's statistics) fails (default 1.1)")
    p.add_argument("--bench", default=None, help="only benchmarks matching this regex")
    p.add_argument("--machine", default="regression-check", help="asv machine name")
    p.add_argument("--rounds", type=int, default=4, help="asv rounds per benchmark: more "
                   "samples for asv's significance test on a noisy machine (default 4)")
    p.add_argument("--results", default=str(ROOT / ".asv" / "regressions"),
                   help="results folder (default .asv/regressions)")
    a = p.parse_args(argv)
    if a.factor <= 1:
        p.error(f"--factor={a.factor} must be > 1")
    from asv.commands.compare import Compare
    from asv.config import Config

    results = Path(a.results)
    env = dict(os.environ)
    subprocess.run([_asv(), "machine", "--yes", "--machine", a.machine], env=env,
                   capture_output=True, check=True, cwd=ROOT)
    for rev in (a.base, a.head):
        run_at(rev, results, a.machine, a.bench, env, a.rounds)
    conf = Config.load(str(ROOT / "asv.conf.json"))
    conf.results_dir = str(results)
    base, head = (_git("rev-parse", r) for r in (a.base, a.head))
    worsened, _ = Compare.print_table(conf, base, head, factor=a.factor, split=True,
                                      only_changed=False, machine=a.machine,
                                      commit_names={base: a.base, head: a.head})
    print(f"\n{'REGRESSION' if worsened else 'no regression'}: {a.head} against {a.base} "
          f"at factor {a.factor:g}")
    return 1 if worsened else 0


if __name__ == "__main__":
    sys.exit(main())
