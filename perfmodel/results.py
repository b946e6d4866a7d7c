"""The project's one tidy results schema: one row per measurement.

Every producer (``perfmodel node``, the MPI harness) writes it and every reader (model
calibration, report, asv) reads only it. A results file is CSV with exactly the columns of
:data:`COLUMNS`, in that order. Writes are atomic (a temporary file renamed over the old one)
and happen after every finished measurement, so a crashed or killed run leaves a readable file
holding everything measured up to then.

Columns (name, type, meaning):
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .ui import UserError

SCHEMA_VERSION = 3

#: (name, python type, description). The order is the file's column order.
COLUMNS: list[tuple[str, type, str]] = [
    ("schema", int, "schema version of the row"),
    ("run_id", str, "identifier shared by the rows of one run"),
    ("time_utc", str, "ISO-8601 UTC time the measurement finished"),
    ("what", str, "measurement family: layer, step, peak, bandwidth, placement (the FMA loop "
                  "on 1 thread, to tell shared cores), probe (the short FMA loop after each "
                  "timed step, stat median over the steps), compile, ratio; from the harness: "
                  "run, iteration, loss, staleness (phase 'tau=K': the fraction of updates "
                  "K updates stale), ps, eval (held-out loss, accuracy, smoothed loss, mean "
                  "training loss since the last evaluation), noise (gradient noise terms and "
                  "B_simple per evaluation interval), target (updates, samples, steps and "
                  "seconds to the target loss; stat 'reached' or 'censored': the run hit its "
                  "step cap first, a lower bound), hyper (lr, momentum, batches, warm-up, ...); "
                  "from fits: convergence_fit, ...; failure (a launch that failed: metric exit_code, the reason "
                  "in 'note'); part (one pass inside a layer's phase, its name in 'note': "
                  "im2col, gemm, layout); wakeup (waking the Numba thread pool for one "
                  "parallel region after 2 ms idle)"),
    ("subject", str, "what was measured: a net name (hep, climate) or a micro-kernel"),
    ("layer", str, "ledger name of the layer ('' for whole-step or machine rows)"),
    ("phase", str, "forward, backward_data, backward_weight, backward, update, loss, step"),
    ("metric", str, "time, flop_rate, sample_rate, bandwidth, ratio, paired_peak_fraction "
                    "(per timed step, the rate over the FMA probe run right after it, median "
                    "over the steps; the probes are the 'probe' rows)"),
    ("value", float, "the aggregate (see 'stat') of the repetitions, in 'unit'"),
    ("unit", str, "s, FLOP/s, samples/s, B/s, 1"),
    ("stat", str, "how repetitions were aggregated: median, mean, max, min, single, sum, "
                  "sustained (a run's mean rate), peak (its best iterations), fit, reached, "
                  "censored"),
    ("min", float, "smallest repetition, in 'unit'"),
    ("max", float, "largest repetition, in 'unit'"),
    ("repeats", int, "number of timed repetitions (warm-up excluded)"),
    ("batch", int, "local batch (samples per step on this process; 0 if none)"),
    ("image_size", int, "input height in pixels (0 if none)"),
    ("flop", float, "FLOP of one timed call, from the ledger (2 per multiply-add)"),
    ("bytes", float, "compulsory bytes moved by one call (roofline; 0 if not estimated)"),
    ("implementation", str, "numba, torch-nchw, torch-channels-last, openblas, ..."),
    ("strategy", str, "sync, async, hybrid ('' for single-node runs)"),
    ("groups", int, "synchronous groups (0 when not applicable)"),
    ("param_servers", int, "parameter-server ranks (0 when none)"),
    ("rank", int, "MPI rank of a per-rank row (-1 for whole-run rows)"),
    ("step", int, "iteration of a per-iteration row (-1 otherwise)"),
    ("elapsed_s", float, "seconds since the run's first timed step (per-iteration rows)"),
    ("straggler", str, "injected straggler delay, e.g. 'exponential:0.05' ('' for none)"),
    ("threads", int, "threads per rank"),
    ("ranks", int, "MPI ranks (1 for a single process)"),
    ("cores", int, "cores available to the job"),
    ("functional", bool, "True when ranks x threads exceed the cores: not for figures"),
    ("host", str, "host name"),
    ("cpu_model", str, "CPU model name"),
    ("versions", str, "library versions, 'name=version' separated by ';'"),
    ("mpi_library", str, "MPI library and version ('' when not run under MPI)"),
    ("git_commit", str, "commit of the code that measured it ('unknown' outside git)"),
    ("job", str, "the batch job it ran in: 'slurm:JOBID@NODELIST' ('' outside one); new in "
                 "v3, empty when a v2 file is read"),
    ("note", str, "free text: a failure's reason, a part's pass, 'fused into L' on a layer "
                  "whose work layer L does ('' mostly); new in v3"),
]
NAMES = [c[0] for c in COLUMNS]
#: columns added since v2, and the value a v2 file's rows read with
ADDED_SINCE_V2 = {"job": "", "note": ""}
__doc__ += "\n".join(f"* ``{n}`` ({t.__name__}): {d}" for n, t, d in COLUMNS)


class ResultsError(ValueError):
    """A results file that cannot be read: the message names the file and the problem."""


@dataclass
class Repeats:
    """A measurement with its repetitions and an explicit aggregation (median by default)."""

    samples: list[float]

    @property
    def median(self) -> float:
        s = sorted(self.samples)
        m = len(s) // 2
        return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


def make_row(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A full row: the run's constant fields (``base``) overlaid with this measurement's."""
    row = {n: "" for n in NAMES}
    row.update(schema=SCHEMA_VERSION, stat="median", min=math.nan, max=math.nan, repeats=1,
               batch=0, image_size=0, flop=0.0, bytes=0.0, layer="", phase="", strategy="",
               groups=0, param_servers=0, rank=-1, step=-1, elapsed_s=math.nan, straggler="",
               time_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               job="", note="")
    row.update(base)
    row.update(fields)
    unknown = set(row) - set(NAMES)
    if unknown:
        raise KeyError(f"not in the results schema: {sorted(unknown)}")
    return row


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it: a reader never
    sees half a file, and a killed writer leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are for sharing
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_results_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a results file of this schema (by its header line)."""
    try:
        with open(path) as f:
            head = f.readline().strip().split(",")
        return head == NAMES or head == [n for n in NAMES if n not in ADDED_SINCE_V2]
    except OSError:
        return False


class ResultsWriter:
    """Collects rows and rewrites the whole file atomically after each :meth:`add`.

    Rows already in an existing file are kept (``append=True``), so runs accumulate.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if append and self.path.exists():
            self.rows = read_results(self.path).to_dict("records")

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=NAMES, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


class ResultsStream:
    """Appends rows to a results file as they finish: each :meth:`add` writes whole lines in
    one call, then flushes and syncs, so a killed run leaves every finished row readable (a
    line torn by a kill mid-write is the last one, and :func:`read_results` drops it). For long
    runs (convergence), where rewriting the whole file after each measurement would cost more
    than the measurement."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                head = f.readline().rstrip("\r\n").split(",")
            if head != NAMES:
                raise ResultsError(f"{self.path}: not a results file of schema "
                                   f"v{SCHEMA_VERSION}; refusing to append to it")
            self._torn_tail()
        else:
            atomic_write_text(self.path, ",".join(NAMES) + "\n")

    def _torn_tail(self) -> None:
        """Cut a line left unfinished by an earlier killed writer, so appends start clean."""
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=NAMES, lineterminator="\n").writerows(rows)
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a results file into one tidy DataFrame.

    Raises ResultsError naming the file and what is wrong (missing, empty, not CSV, missing or
    unknown columns, values of the wrong type). A last line without its newline (a writer killed
    mid-line) is dropped: every finished row stays readable.
    """
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"{p}: no such results file")
    if p.stat().st_size == 0:
        raise ResultsError(f"{p}: the file is empty (no header, no rows)")
    try:
        raw = p.read_bytes()
        if not raw.endswith(b"\n") and b"\n" in raw:
            raw = raw[:raw.rfind(b"\n") + 1]
        df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, na_values=["nan", "NaN"],
                         dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ResultsError(f"{p}: not a results CSV ({str(e).splitlines()[0]})") from None
    missing = [n for n in NAMES if n not in df.columns]
    if missing and set(missing) <= set(ADDED_SINCE_V2):  # a v2 file: fill the new columns
        for n in missing:
            df[n] = ADDED_SINCE_V2[n]
        df = df[NAMES]
        missing = []
    extra = [c for c in df.columns if c not in NAMES]
    if missing or extra:
        raise ResultsError(f"{p}: columns do not match the results schema v{SCHEMA_VERSION} "
                           f"(missing: {missing or 'none'}; unknown: {extra or 'none'})")
    for name, typ, _ in COLUMNS:
        col = df[name]
        try:
            if typ is float:
                df[name] = pd.to_numeric(col.replace("", "nan"), errors="raise").astype(float)
            elif typ is int:
                df[name] = pd.to_numeric(col, errors="raise").astype("int64")
            elif typ is bool:
                bad = ~col.isin(["True", "False"])
                if bad.any():
                    raise ValueError(f"{col[bad].iloc[0]!r} is not True/False")
                df[name] = col == "True"
        except (ValueError, TypeError) as e:
            row = _first_bad_row(col, typ)
            raise ResultsError(f"{p}: column '{name}' must hold {typ.__name__} values "
                               f"(row {row}: {e})") from None
    return df


def read_all(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Every results file into one frame (empty for none); a bad file is a UserError naming
    it (the commands' one-line error)."""
    try:
        frames = [read_results(p) for p in paths]
    except ResultsError as e:
        raise UserError(str(e)) from None
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _first_bad_row(col: pd.Series, typ: type) -> int:
    for i, v in enumerate(col):
        try:
            typ(float(v)) if typ in (int, float) else None
        except (ValueError, TypeError):
            return i + 2  # 1-based, after the header
    return 0
