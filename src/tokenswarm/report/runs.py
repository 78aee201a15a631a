"""One index page of every run under a folder: ``tokenswarm runs reports/`` writes ``reports/index.html``.

A run is a folder holding run.json (found at any depth up to :data:`MAX_DEPTH` below the root, so the
``repeat-<i>`` folders of ``--repeat`` are listed too). Each row names the run's date, engine (with its
version as the server told it), model, tokenswarm's version and command line (:mod:`tokenswarm.report.provenance`;
``unknown`` where run.json did not record it), the peak output throughput and the saturation level, from the
built summary.json (``tokenswarm report DIR`` writes it; without one, the peak is read from levels.csv and the
saturation reads ``not built``), and links the run's report.html (else report.md). Newest first. Nothing is
written into the run folders; the page is one self-contained HTML file (inline CSS, no script).

Errors: :class:`~tokenswarm.report.errors.ReportError` (one line, the CLI exits 2) for a root that is not a
folder, one that holds no run folder, or an index that cannot be written. A run folder whose run.json
cannot be read is listed as such (its row says why), not fatal.
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tokenswarm import runfolder
from tokenswarm.report.analysis import SUMMARY_JSON
from tokenswarm.report.document import CSS
from tokenswarm.report.errors import ReportError
from tokenswarm.report.provenance import of_run
from tokenswarm.report.readers import read_levels_csv

INDEX_HTML = "index.html"
MAX_DEPTH = 3  # run folders this many levels below the root at most (root/<run>/repeat-1 is 2)
HEADS = ("Date (UTC)", "Run", "Engine", "Model", "tokenswarm", "Command", "Peak output tok/s", "Saturation")


@dataclass
class RunRow:
    """One run of the index: its folder, the cells' values, and a problem reading it ('' when none)."""

    folder: str
    date: str = "unknown"
    engine: str = "unknown"
    model: str = "unknown"
    version: str = "unknown"
    command: str = "unknown"
    peak: str = "-"
    saturation: str = "-"
    report: str | None = None  # path of report.html or report.md, when built
    complete: bool = True
    problem: str = ""


@dataclass
class RunsIndex:
    """What :func:`write_index` found and wrote."""

    root: str
    path: str
    rows: list[RunRow] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{r.folder}: {r.problem}" for r in self.rows if r.problem]


def find_runs(root: str, max_depth: int = MAX_DEPTH) -> list[str]:
    """Folders under ``root`` (``root`` itself included) that hold run.json, at most ``max_depth`` levels
    down; sorted by path. Hidden folders and ``plots`` are not searched."""
    found = []
    base = os.path.normpath(root).count(os.sep)
    for folder, dirs, files in os.walk(root):
        if runfolder.RUN_JSON in files:
            found.append(folder)
        depth = os.path.normpath(folder).count(os.sep) - base
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != runfolder.PLOTS) if depth < max_depth \
            else []
    return sorted(found)


def _summary(folder: str) -> dict[str, Any]:
    try:
        with open(os.path.join(folder, SUMMARY_JSON), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _level(value: Any, mode: str) -> str:
    return f"{float(value):g}" + (" req/s" if mode == "rate" else "")


def read_row(folder: str) -> RunRow:
    """The index's row for one run folder (see the module's text)."""
    row = RunRow(folder)
    try:
        with open(os.path.join(folder, runfolder.RUN_JSON), encoding="utf-8") as fh:
            meta = json.load(fh)
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        row.problem = f"run.json cannot be read ({str(e).splitlines()[0][:120]})"
        return row
    p = of_run(meta)
    row.date = p["date"].replace("T", " ").replace("Z", "")
    engine = p["engine_name"]
    row.engine = engine if p["engine_version"] == "unknown" else f"{engine} {p['engine_version']}"
    row.model, row.version, row.command = p["model"], p["tokenswarm"], p["command"]
    row.complete = bool(meta.get("complete", True))
    mode = str(meta.get("mode") or "concurrency")
    summ = _summary(folder)
    peak = summ.get("peak_output_throughput")
    if isinstance(peak, dict) and peak.get("output_throughput_tok_s") is not None:
        row.peak = f"{float(peak['output_throughput_tok_s']):,.1f} at {_level(peak['level'], mode)}"
    elif os.path.exists(os.path.join(folder, runfolder.LEVELS_CSV)):
        try:
            lv = read_levels_csv(os.path.join(folder, runfolder.LEVELS_CSV))
            col = lv["output_throughput_tok_s"].astype(float)
            if col.notna().any():
                i = col.idxmax()
                row.peak = f"{col[i]:,.1f} at {_level(lv.loc[i, 'level'], mode)}"
        except (ReportError, KeyError, ValueError):
            pass
    if summ:
        levels = summ.get("levels") or []
        if summ.get("saturation_level") is not None:
            row.saturation = _level(summ["saturation_level"], mode)
        elif len(levels) > 1:
            row.saturation = "not found"
        else:
            row.saturation = "one level"
    else:
        row.saturation = "not built"
    for name in (runfolder.REPORT_HTML, runfolder.REPORT_MD):
        if os.path.exists(os.path.join(folder, name)):
            row.report = os.path.join(folder, name)
            break
    return row


def _cell(text: str, css: str = "") -> str:
    return f'<td{f" class={css!r}" if css else ""}>{html.escape(text)}</td>'


def render(index: RunsIndex) -> str:
    """The index page: one self-contained HTML file."""
    here = os.path.dirname(os.path.abspath(index.path))
    body = []
    for r in index.rows:
        name = os.path.relpath(os.path.abspath(r.folder), os.path.abspath(index.root))
        name = os.path.basename(os.path.abspath(index.root)) if name == "." else name
        if r.report:
            href = quote(os.path.relpath(os.path.abspath(r.report), here).replace(os.sep, "/"))
            run = f'<td class="l"><a href="{html.escape(href)}">{html.escape(name)}</a>'
        else:
            run = f'<td class="l">{html.escape(name)} <span class="note">(no report: tokenswarm report DIR)</span>'
        if not r.complete:
            run += ' <span class="note">(interrupted)</span>'
        if r.problem:
            run += f' <span class="note">({html.escape(r.problem)})</span>'
        body.append("<tr>" + _cell(r.date, "l") + run + "</td>" + _cell(r.engine, "l") + _cell(r.model, "l")
                    + _cell(r.version, "l") + (f'<td class="l cmd"><code>{html.escape(r.command)}</code></td>'
                                               if r.command != "unknown" else _cell(r.command, "l"))
                    + _cell(r.peak, "r") + _cell(r.saturation, "r") + "</tr>")
    title = f"tokenswarm runs: {index.root}"
    css = CSS + ("td.cmd{max-width:420px}td.cmd code{white-space:pre-wrap;overflow-wrap:anywhere}"
                 "td .note{color:#6b7385;font-size:.9em}table.runs td{vertical-align:top}"
                 "table.runs td.r{white-space:nowrap}")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{css}</style>", "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(index.rows)} run{'s' if len(index.rows) != 1 else ''}, newest first; written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. Peak and saturation come from each run's "
        "summary.json (<code>tokenswarm report DIR</code> builds it).</p>",
        '<div class="scroll"><table class="runs"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in HEADS) + "</tr></thead><tbody>",
        *body, "</tbody></table></div>", "</body></html>"]) + "\n"


def write_index(root: str, out: str | None = None) -> RunsIndex:
    """Find every run under ``root``, write the index page to ``out`` (default ``<root>/index.html``) and
    return what was found. ReportError for a root that is not a folder, holds no run, or an ``out`` that
    cannot be written."""
    if not os.path.isdir(root):
        raise ReportError(f"runs: {root!r} is not a folder")
    folders = find_runs(root)
    if not folders:
        raise ReportError(f"runs: no run folder (a folder with run.json) under {root!r}, "
                          f"searched {MAX_DEPTH} levels deep")
    index = RunsIndex(root, out or os.path.join(root, INDEX_HTML))
    index.rows = sorted((read_row(f) for f in folders), key=lambda r: (r.date != "unknown", r.date, r.folder),
                        reverse=True)
    text = render(index)
    try:
        with open(index.path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise ReportError(f"runs: cannot write {index.path!r}: {e.strerror or e}") from None
    return index
