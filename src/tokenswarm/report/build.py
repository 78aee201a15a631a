"""Rebuild a run folder's derived files (levels.csv, report.md) from requests.csv and run.json."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from tokenswarm import runfolder
from tokenswarm.report import tables
from tokenswarm.report.levels import level_stats, load_requests, windows_from


class ReportError(ValueError):
    """A run folder that cannot be reported on (missing or unreadable files)."""


def build(run_dir: str, warmup_s: float | None = None) -> pd.DataFrame:
    """Write levels.csv and report.md for ``run_dir``; returns the levels table."""
    if not os.path.isdir(run_dir):
        raise ReportError(f"no run folder at {run_dir}")
    meta = runfolder.read_run_json(run_dir)
    req_path = os.path.join(run_dir, runfolder.REQUESTS_CSV)
    if not os.path.exists(req_path):
        raise ReportError(f"{req_path} is missing: nothing to report")
    df = load_requests(req_path)
    if warmup_s is None:
        warmup_s = float(meta.get("settings", {}).get("warmup_s", 0) or 0)
    windows = windows_from(df, meta.get("timeline"), warmup_s)
    slo = meta.get("settings", {}).get("slo") or None
    levels = level_stats(df, windows, slo=slo, mode=meta.get("mode", "concurrency"))
    levels.to_csv(os.path.join(run_dir, runfolder.LEVELS_CSV), index=False, float_format="%.4f")
    with open(os.path.join(run_dir, runfolder.REPORT_MD), "w", encoding="utf-8") as fh:
        fh.write(markdown_report(meta, levels, df))
    return levels


def markdown_report(meta: dict[str, Any], levels: pd.DataFrame, df: pd.DataFrame) -> str:
    s = meta.get("settings", {})
    title = meta.get("run_id", "run")
    lines = [f"# tokenswarm report: {title}", ""]
    if s:
        lines.append(f"Engine `{s.get('engine')}` at {s.get('base_url')}{s.get('endpoint', '')}, model "
                     f"`{s.get('model')}`, dialect {s.get('dialect')}, max_tokens {s.get('max_tokens')}, "
                     f"input length {s.get('input_len')}.")
        lines.append("")
    if not meta.get("complete", True):
        lines += ["**This run did not complete** (interrupted or crashed): figures cover what was measured.", ""]
    lines += [tables.markdown(levels), ""]
    n_fail = int((~df["status"].isin(["ok", "cancelled"])).sum()) if len(df) else 0
    if n_fail:
        kinds = df[~df["status"].isin(["ok", "cancelled"])]["status"].value_counts()
        lines.append("Failures by kind: " + ", ".join(f"{k} {v}" for k, v in kinds.items()) + ".")
        lines.append("")
    lines += [
        "Latency percentiles are exact, from every request in requests.csv. TTFT: first output-carrying "
        "event minus send; TPOT: (E2E - TTFT) / (output tokens - 1); throughput: tokens of requests "
        "completed inside each level's measurement window / window seconds.",
        "",
    ]
    return "\n".join(lines)


def summary_text(run_dir: str) -> str:
    """The published-style table of a built run folder, as aligned text."""
    path = os.path.join(run_dir, runfolder.LEVELS_CSV)
    if not os.path.exists(path):
        return ""
    return tables.text(pd.read_csv(path))
