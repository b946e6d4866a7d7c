"""The report as a page (``index.html``: local PNGs, no scripts but one inline check) and
as ``summary.md`` and ``summary.csv``."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .common import Claim, Section, fmt


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, bad = 0;
  for (var i = 0; i < imgs.length; i++) if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad++;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken-images', bad);
});
</script>"""


FOLD_ROWS = 12  # longer tables are folded (and always linked as CSV)
PAGE_COLUMNS = 10  # wider tables show their first columns on the page; the CSV has them all


def _cell(v) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else fmt(v, 4)
    return html.escape(str(v)) if str(v) != "" else "–"


def _table_html(out: Path, name: str, functional: bool = False) -> str:
    df = pd.read_csv(out / name, keep_default_na=False, na_values=[""])
    more = len(df.columns) - PAGE_COLUMNS
    if more > 0:  # a table wider than the page would be cut or scroll: the rest is in the CSV
        df = df.iloc[:, :PAGE_COLUMNS]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    table = f"<table><tr>{head}</tr>{body}</table>"
    label = (f"<a href='{html.escape(name)}'>{html.escape(name)}</a> ({len(df)} rows"
             + (f"; the first {PAGE_COLUMNS} columns, {more} more in the CSV" if more > 0
                else "")
             + ("; functional runs: more ranks x threads than cores, not timing data"
                if functional else "") + ")")
    if len(df) > FOLD_ROWS:
        return f"<details><summary>table {label}</summary>{table}</details>"
    return f"<p class='tab'>table {label}</p>{table}"


def _claims_html(claims: list[Claim]) -> str:
    rows = []
    for c in claims:
        verdict = verdict_of(c)
        cls = {"pass": "ok", "FAIL": "fail", "stated": "st"}.get(verdict, "na")
        rows.append(f"<tr><td style='text-align:left'>{html.escape(c.claim)}</td>"
                    f"<td>{html.escape(fmt(c.value, 3, c.unit))}</td>"
                    f"<td>{html.escape(c.tolerance)}</td><td class='{cls}'>{verdict}</td>"
                    f"<td style='text-align:left'>{html.escape(_how(c))}</td></tr>")
    return ("<table class='claims'><tr><th>claim</th><th>measured</th><th>tolerance</th>"
            "<th>verdict</th><th>how</th></tr>" + "".join(rows) + "</table>")


def verdict_of(c: Claim) -> str:
    if c.tolerance == "stated":
        return "stated"
    if c.inconclusive:
        return "inconclusive"
    return "not measured" if c.passed is None else ("pass" if c.passed else "FAIL")


def _how(c: Claim) -> str:
    """The claim's how, led by why it is inconclusive where it is."""
    return f"inconclusive: {c.inconclusive}; {c.detail}" if c.inconclusive else c.detail


def summary_frame(claims: list[Claim]) -> pd.DataFrame:
    """The claims as the summary.csv table (every number of the summary on top is here)."""
    return pd.DataFrame([dict(claim=c.claim, value=float(fmt(c.value, 3)) if c.value is not
                              None and math.isfinite(c.value) else np.nan, unit=c.unit,
                              tolerance=c.tolerance, verdict=verdict_of(c).lower(),
                              how=_how(c))
                         for c in claims])


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1em;display:block;"
         "overflow-x:auto;max-width:100%}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
         "img{max-width:100%}.missing{color:#a40}.caption{color:#555;font-size:14px;"
         "margin-top:0}.ok{color:#060;font-weight:bold}.fail{color:#b00;font-weight:bold}"
         ".na{color:#a40}.st{color:#555}.machine{background:#f4f4f4;padding:0.6em}.tab{margin-bottom:0}")


def write_html(out: Path, title: str, sections: list[Section], intro: str = "",
               machine: str = "") -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style>{CHECK_SCRIPT}</head><body>"
             f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    if machine:
        parts.append(f"<p class='machine'>{html.escape(machine)}</p>")
    claims = [c for s in sections for c in s.claims]
    if claims:
        parts.append("<h2>Summary: what holds</h2>" + _claims_html(claims)
                     + "<p class='caption'>Each claim with its tolerance; the numbers are in "
                       "<a href='summary.csv'>summary.csv</a>, the measurements behind them "
                       "in the sections below and in results/.</p>")
    missing = [s for s in sections if s.missing]
    if missing:
        parts.append("<p class='missing'>Partial report; missing: " + "; ".join(
            html.escape(f"{s.title} ({s.missing})") for s in missing) + "</p>")
    for s in sections:
        if s.missing:
            continue
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        for f in s.figures:
            parts.append(f"<p><img src='{html.escape(f)}' alt='{html.escape(f)}'></p>")
            if f in s.captions:
                parts.append(f"<p class='caption'>{html.escape(s.captions[f])}</p>")
        for t in s.tables:
            parts.append(_table_html(out, t, functional=t in s.functional))
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts))
    return path


def write_summary(out: Path, title: str, sections: list[Section], machine: str = "") -> Path:
    lines = [f"# {title}", ""]
    if machine:
        lines += [machine, ""]
    claims = [c for s in sections for c in s.claims]
    if claims:
        lines += ["## Summary: what holds", "", "| claim | measured | tolerance | verdict |",
                  "|---|---|---|---|"]
        for c in claims:
            verdict = verdict_of(c)
            cells = (c.claim, fmt(c.value, 3, c.unit), c.tolerance, verdict)
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
        lines.append("")
        # why a claim could not be judged (the html and summary.csv carry it in "how" too)
        why = [f"- inconclusive, {c.claim}: {c.inconclusive}" for c in claims
               if verdict_of(c) == "inconclusive"]
        lines += [*why, ""] if why else []
    for s in sections:
        lines.append(f"## {s.title}")
        lines.append("")
        lines.append(f"Missing: {s.missing}" if s.missing else (s.text or ""))
        for f in s.figures:
            lines.append(f"![{f}]({f})")
            if f in s.captions:
                lines.append(f"*{s.captions[f]}*")
        for t in s.tables:
            lines.append(f"- table: [{t}]({t})")
        lines.append("")
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path
