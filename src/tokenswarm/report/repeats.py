"""Repeated runs of one plan (``--repeat N``): the spread between runs beside each run's own interval.

A run's interval (:mod:`tokenswarm.report.intervals`) says how precisely that run measured its figures; it
cannot see what changes from one run to the next (the engine's state, its caches, the machine, the prompts).
Repeats can: for each level and figure, repeats.json and repeats.md give every run's value, their mean, the
spread between runs (standard deviation, and min-max), the coefficient of variation, and the mean
half-width of the runs' own intervals. A between-runs spread well beyond what the within-run intervals allow
(sd larger than the mean half-width / 1.96) says the runs differ by more than their own noise: something
outside a single run moves the figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenswarm import runfolder
from tokenswarm.report import tables
from tokenswarm.report.document import Document
from tokenswarm.report.intervals import ci_columns
from tokenswarm.report.readers import read_levels_csv

REPEATS_JSON, REPEATS_MD = "repeats.json", "repeats.md"
FIGURES: tuple[tables.Column, ...] = (
    ("output_throughput_tok_s", "Output tok/s", "{:.1f}"),
    ("request_throughput_req_s", "Req/s", "{:.2f}"),
    ("ttft_mean_ms", "Mean TTFT (ms)", "{:.1f}"),
    ("ttft_p99_ms", "P99 TTFT (ms)", "{:.1f}"),
    ("tpot_mean_ms", "Mean TPOT (ms)", "{:.2f}"),
    ("tpot_p99_ms", "P99 TPOT (ms)", "{:.2f}"),
)


def summarize(run_dirs: Sequence[str]) -> dict[str, Any]:
    """The spread between the runs in ``run_dirs`` (each built: its levels.csv), per level and figure."""
    per_run = [read_levels_csv(os.path.join(d, runfolder.LEVELS_CSV)) for d in run_dirs]
    levels = sorted({float(x) for lv in per_run for x in lv["level"]})
    out: list[dict[str, Any]] = []
    for level in levels:
        for col, _head, _fmt in FIGURES:
            values, halves = [], []
            for lv in per_run:
                rows = lv[lv["level"].astype(float) == level]
                if not len(rows) or col not in rows.columns:
                    values.append(math.nan)
                    continue
                r = rows.iloc[0]
                values.append(float(r[col]))
                low, high = ci_columns(col)
                if low in rows.columns and high in rows.columns:
                    halves.append((float(r[high]) - float(r[low])) / 2.0)
            v = np.array(values, float)
            known = v[~np.isnan(v)]
            h = np.array(halves, float)
            h = h[~np.isnan(h)]
            mean = float(known.mean()) if known.size else math.nan
            sd = float(known.std(ddof=1)) if known.size > 1 else math.nan
            half = float(h.mean()) if h.size else math.nan
            out.append({
                "level": level, "figure": col, "values": values, "mean": mean, "sd": sd,
                "min": float(known.min()) if known.size else math.nan,
                "max": float(known.max()) if known.size else math.nan,
                "cv_pct": 100.0 * sd / mean if mean and not math.isnan(sd) else math.nan,
                "within_run_half_width": half,
                "beyond_within_run": bool(not math.isnan(sd) and not math.isnan(half) and sd > half / 1.96),
            })
    return {"runs": list(run_dirs), "figures": out}


def write(out_dir: str, run_dirs: Sequence[str]) -> dict[str, Any]:
    """repeats.json and repeats.md in ``out_dir``; returns the summary."""
    summary = summarize(run_dirs)
    runfolder.write_json(os.path.join(out_dir, REPEATS_JSON), summary)
    doc = Document(f"tokenswarm repeats: {len(run_dirs)} runs of one plan")
    doc.para("Each run drew fresh prompts. **sd** is the spread between the runs; **within run** the mean "
             "half-width of the runs' own 95 % intervals. A spread beyond what the runs' own intervals allow "
             "(sd > within run / 1.96, marked `>`) says the figure moves between runs by more than a run's own "
             "noise.")
    heads = ["Level", "Figure", *(f"run {i + 1}" for i in range(len(run_dirs))), "Mean", "sd", "CV", "Within run"]
    body = []
    fmts = {c: f for c, _, f in FIGURES}
    names = {c: h for c, h, _ in FIGURES}
    for f in summary["figures"]:
        fmt = fmts[f["figure"]]
        body.append([f"{f['level']:g}", names[f["figure"]], *(tables.cell(v, fmt) for v in f["values"]),
                     tables.cell(f["mean"], fmt), tables.cell(f["sd"], fmt) + (" >" if f["beyond_within_run"] else ""),
                     tables.cell(f["cv_pct"], "{:.1f}%"), tables.cell(f["within_run_half_width"], fmt)])
    doc.table(heads, body, left=2)
    doc.para("Runs: " + ", ".join(f"`{d}`" for d in run_dirs))
    with open(os.path.join(out_dir, REPEATS_MD), "w", encoding="utf-8") as fh:
        fh.write(doc.markdown())
    return summary


def text(summary: dict[str, Any]) -> str:
    """Output tok/s per level across the runs, as aligned text (what the command line prints)."""
    rows = [f for f in summary["figures"] if f["figure"] == "output_throughput_tok_s"]
    heads = ["Level", *(f"run {i + 1} tok/s" for i in range(len(summary["runs"]))), "Mean", "sd", "CV"]
    body = [[f"{f['level']:g}", *(tables.cell(v, "{:.1f}") for v in f["values"]), tables.cell(f["mean"], "{:.1f}"),
             tables.cell(f["sd"], "{:.1f}") + (" >" if f["beyond_within_run"] else ""),
             tables.cell(f["cv_pct"], "{:.1f}%")] for f in rows]
    return tables.text_grid(heads, body)
