"""Several runs side by side (engines, gateways, settings): compare.md, compare.html, compare.csv, plots.

``tokenswarm compare DIR DIR... [--labels a,b] [--out DIR]`` calls
:func:`compare`. Each folder is read with :func:`tokenswarm.report.build.analyse`
(an up-to-date levels.csv is reused; nothing is written into the run
folders). Levels are outer-joined: every level any run measured gets a row per
run, empty where that run has no such level. A run's label is, unless given,
its ``settings.run_name``, else its engine preset, else its folder name
(folder names, then ``#n``, break ties). Outputs, in ``out_dir``:
``compare.csv`` (long format: level, run, metrics), ``compare.md``,
``compare.html`` (one self-contained file, plots embedded) and
``compare_*.png`` (one line per run, each run's saturation level circled).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tokenswarm import runfolder
from tokenswarm.report import plots, tables
from tokenswarm.report.build import Analysis, analyse, level_word
from tokenswarm.report.document import Document
from tokenswarm.report.errors import ReportError

COMPARE_MD, COMPARE_HTML, COMPARE_CSV = "compare.md", "compare.html", "compare.csv"

#: (levels.csv column, heading, format) compared per level and run
METRICS: tuple[tables.Column, ...] = (
    ("output_throughput", "Output tok/s", "{:.1f}"),
    ("ttft_mean", "Mean TTFT (ms)", "{:.1f}"),
    ("ttft_p99", "P99 TTFT (ms)", "{:.1f}"),
    ("tpot_mean", "Mean TPOT (ms)", "{:.2f}"),
    ("tpot_p99", "P99 TPOT (ms)", "{:.2f}"),
)


@dataclass
class CompareResult:
    """What :func:`compare` produced: labels in run order, the long table, and the files written."""

    labels: list[str]
    table: pd.DataFrame  # columns: level, run, then the METRICS columns; one row per (level, run)
    out_dir: str
    files: list[str] = field(default_factory=list)
    mode: str = "concurrency"

    def pivot(self, column: str = "output_throughput") -> pd.DataFrame:
        """Levels as rows, runs as columns, for one metric (NaN where a run lacks the level)."""
        p = self.table.pivot(index="level", columns="run", values=column)
        return p.reindex(columns=self.labels)

    def text(self) -> str:
        """Output throughput per level and run, as aligned text (what the CLI prints)."""
        p = self.pivot()
        heads = [tables.LEVEL_HEADING[self.mode], *(f"{lab} tok/s" for lab in self.labels)]
        body = [[f"{lvl:g}", *(tables.cell(v, "{:.1f}") for v in p.loc[lvl])] for lvl in p.index]
        return tables.text_grid(heads, body)


def parse_labels(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (None for None or empty)."""
    if not text:
        return None
    return [part.strip() for part in text.split(",")]


def default_out_dir(root: str = runfolder.DEFAULT_ROOT, now: float | None = None) -> str:
    """``reports/compare-20261121-173000`` (not created)."""
    return os.path.join(root, "compare-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now)))


def default_labels(analyses: Sequence[Analysis]) -> list[str]:
    """run_name, else engine, else folder name; ties broken by folder name, then ``#n``."""
    first = []
    for a in analyses:
        s = a.settings
        first.append(str(s.get("run_name") or s.get("engine") or _folder(a.run_dir)))
    labels = [lab if first.count(lab) == 1 else _folder(a.run_dir) for lab, a in zip(first, analyses)]
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if labels.count(lab) == 1 else f"{lab}#{seen[lab]}")
    return out


def _folder(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def compare(run_dirs: list[str], labels: list[str] | None = None, out_dir: str | None = None) -> CompareResult:
    """Put the runs in ``run_dirs`` side by side; writes compare.csv/.md/.html and compare_*.png to ``out_dir``
    (default :func:`default_out_dir`). ReportError for a folder that is not a run, or bad labels."""
    if not run_dirs:
        raise ReportError("compare needs at least one run folder")
    analyses = []
    for d in run_dirs:
        if not os.path.isdir(d):
            raise ReportError(f"{d}: no such folder")
        analyses.append(analyse(d, prefer_levels_csv=True))
    if labels is None:
        labels = default_labels(analyses)
    else:
        labels = [str(lab).strip() for lab in labels]
        if len(labels) != len(run_dirs):
            raise ReportError(f"--labels {','.join(labels)!r}: {len(labels)} labels for {len(run_dirs)} run folders")
        if any(not lab for lab in labels):
            raise ReportError(f"--labels {','.join(labels)!r}: a label is empty")
        dup = next((lab for lab in labels if labels.count(lab) > 1), None)
        if dup is not None:
            raise ReportError(f"--labels {','.join(labels)!r}: {dup!r} appears twice; labels must be distinct")
    out_dir = out_dir or default_out_dir()
    os.makedirs(out_dir, exist_ok=True)
    modes = {a.mode for a in analyses}
    mode = modes.pop() if len(modes) == 1 else "concurrency"
    table = _long_table(analyses, labels)
    result = CompareResult(labels, table, out_dir, mode=mode)
    path = os.path.join(out_dir, COMPARE_CSV)
    table.to_csv(path, index=False, float_format="%.4f")
    result.files.append(path)
    runs = [(lab, a.levels, a.knee.level) for lab, a in zip(labels, analyses)]
    plot_paths = plots.compare_plots(runs, out_dir, mode)
    result.files += plot_paths
    doc = _document(analyses, labels, result, plot_paths, mixed=len({a.mode for a in analyses}) > 1)
    for name, text in ((COMPARE_MD, doc.markdown()), (COMPARE_HTML, doc.html())):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        result.files.append(path)
    return result


def _long_table(analyses: Sequence[Analysis], labels: Sequence[str]) -> pd.DataFrame:
    """Outer join on level: one row per (level, run), runs in the given order."""
    levels = sorted({float(x) for a in analyses for x in a.levels["level"]})
    frames = []
    for lab, a in zip(labels, analyses):
        d = a.levels.copy()
        d["level"] = d["level"].astype(float)
        cols = ["level", *(c for c, _, _ in METRICS if c in d.columns)]
        d = d[cols].drop_duplicates("level").set_index("level").reindex(levels)
        for c, _, _ in METRICS:
            if c not in d.columns:
                d[c] = np.nan
        d = d.reset_index()
        d.insert(1, "run", lab)
        d["_order"] = labels.index(lab)
        frames.append(d)
    out = pd.concat(frames, ignore_index=True).sort_values(["level", "_order"], kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)[["level", "run", *(c for c, _, _ in METRICS)]]


def _document(analyses: Sequence[Analysis], labels: Sequence[str], result: CompareResult, plot_paths: list[str],
              mixed: bool) -> Document:
    doc = Document("tokenswarm compare: " + " vs ".join(labels))
    if mixed:
        doc.warn("These runs mix concurrency and request-rate sweeps: their levels mean different things "
                 "(users vs req/s); compare them with care.")
    doc.heading("Runs")
    body = []
    for lab, a in zip(labels, analyses):
        s = a.settings
        summ = a.summary()
        peak = summ["peak_output_throughput"]
        best = summ["max_level_meeting_slo"]
        body.append([
            lab, a.run_dir, str(s.get("engine") or "-"), str(s.get("model") or "-"), level_word(a.mode),
            {"locust_csv": "Locust CSV (rounded)", "levels.csv": "levels.csv"}.get(a.source, "requests.csv"),
            "yes" if a.complete else "no (interrupted)",
            ", ".join(f"{x:g}" for x in summ["levels"]) or "-",
            f"{a.knee.level:g}" if a.knee.level is not None else "not found",
            f"{best:g}" if best is not None else ("-" if not a.slo else "none"),
            f"{peak['output_throughput']:,.1f} at {peak['level']:g}" if peak else "-",
        ])
    doc.table(["Run", "Folder", "Engine", "Model", "Mode", "Source", "Complete", "Levels", "Saturation",
               "Max level meeting SLO", "Peak output tok/s"], body, left=8)
    if any(a.source == "locust_csv" for a in analyses):
        doc.para("Runs built from Locust's CSV files carry Locust's rounded percentiles and approximate "
                 "throughput; the others are exact.")
    doc.heading("Output throughput (tok/s)")
    p = result.pivot()
    lh = tables.LEVEL_HEADING[result.mode]
    doc.table([lh, *labels], [[f"{lvl:g}", *(tables.cell(v, "{:.1f}") for v in p.loc[lvl])] for lvl in p.index])
    doc.heading("Per level and run")
    heads = [lh, "Run", *(h for _, h, _ in METRICS)]
    rows = [[f"{r['level']:g}", str(r["run"]), *(tables.cell(r[c], f) for c, _, f in METRICS)]
            for r in result.table.to_dict("records")]
    doc.table(heads, rows, left=0)
    doc.para("A `-` means the run has no such level (levels are outer-joined across runs).")
    if plot_paths:
        doc.heading("Plots")
        captions = {"compare_throughput.png": "Output throughput", "compare_ttft.png": "TTFT mean / p99",
                    "compare_tpot.png": "TPOT mean / p99", "compare_latency_vs_throughput.png": "Latency vs throughput"}
        for path in plot_paths:
            name = os.path.basename(path)
            doc.image(path, name, captions.get(name, name))
    return doc
