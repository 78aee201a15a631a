"""Rebuild a run folder's derived files from its raw ones: levels.csv, summary.json, report.md, report.html
and plots/*.png.

``tokenswarm report DIR`` calls :func:`build_report`: :func:`tokenswarm.report.analysis.analyse` computes the numbers
(nothing written), :mod:`tokenswarm.report.plots` draws them, :mod:`tokenswarm.report.compose` writes the words
and tables, and this module puts the files in the folder. :class:`Analysis`, :func:`analyse`, :func:`read_meta`,
:func:`summary_text` and :data:`SUMMARY_JSON` are importable from here too, as before the split.
"""

from __future__ import annotations

import os

import pandas as pd

from tokenswarm import runfolder
from tokenswarm.report import capacity, plots
from tokenswarm.report.analysis import SOURCE_LEVELS, SUMMARY_JSON, Analysis, analyse, read_meta
from tokenswarm.report.compose import report_document, summary_text
from tokenswarm.report.errors import ReportError

__all__ = ["SUMMARY_JSON", "Analysis", "ReportError", "analyse", "build_report", "read_meta", "summary_text"]


def plot_title(a: Analysis) -> str:
    """The run as each plot's title names it: ``vllm · Qwen/Qwen2.5-0.5B · 20261207-105802-vllm`` (engine
    and model as far as run.json knows them)."""
    s = a.settings
    return " · ".join(str(x) for x in (s.get("engine"), s.get("model"), a.run_id) if x)


def build_report(run_dir: str, warmup_s: float | None = None, with_plots: bool = True) -> pd.DataFrame:
    """Write levels.csv, summary.json, report.md, report.html and plots/*.png (for two levels or more) into
    ``run_dir``; returns the levels table. ``warmup_s`` overrides run.json's ``settings.warmup_s``.
    ReportError (naming the file, field and value) for a folder that cannot be reported on."""
    a = analyse(run_dir, warmup_s)
    if a.source != SOURCE_LEVELS:
        a.levels.to_csv(os.path.join(run_dir, runfolder.LEVELS_CSV), index=False, float_format="%.4f")
    a.capacity = capacity.build(run_dir, a.meta, a.levels)
    runfolder.write_json(os.path.join(run_dir, SUMMARY_JSON), a.summary())
    plot_paths: list[str] = []
    ident = plot_title(a)
    if with_plots and a.capacity:
        drawn = capacity.plot(a.capacity, os.path.join(run_dir, runfolder.PLOTS), ident)
        if drawn:
            plot_paths.append(drawn)
    if with_plots and len(a.levels) > 1:  # a single level has no curve to draw
        out_dir = os.path.join(run_dir, runfolder.PLOTS)
        plot_paths += plots.sweep_plots(a.levels, out_dir, a.knee.level, a.mode, ident)
        gauges = plots.engine_gauges_plot(a.levels, out_dir, a.mode, ident)
        if gauges:
            plot_paths.append(gauges)
    doc = report_document(a, plot_paths)
    with open(os.path.join(run_dir, runfolder.REPORT_MD), "w", encoding="utf-8") as fh:
        fh.write(doc.markdown())
    with open(os.path.join(run_dir, runfolder.REPORT_HTML), "w", encoding="utf-8") as fh:
        fh.write(doc.html())
    return a.levels
