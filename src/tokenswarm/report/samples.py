"""Time-sampled files of a run folded into its levels: the client self-check and the engine's metrics.

* ``client_health.csv`` (each load-generating process, every second: CPU % of
  a core, event-loop lag) -> per level ``client_saturated``,
  ``client_cpu_max_pct``, ``client_lag_p99_ms`` and the reason, judged by
  :func:`tokenswarm.health.verdict` over the samples inside the level.
* ``server_metrics.csv`` (the engine's /metrics every few seconds, mapped to
  common names) -> per level means of ``server_running``, ``server_waiting``,
  ``server_kv_cache_usage`` inside the level's measurement window.

Both files are optional; a level without samples gets empty cells.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm import health
from tokenswarm.report.levels import Window

HEALTH_CSV = "client_health.csv"
SERVER_CSV = "server_metrics.csv"
SERVER_COLUMNS = {"running": "server_running", "waiting": "server_waiting", "kv_cache_usage": "server_kv_cache_usage"}


def _read(path: str) -> pd.DataFrame | None:
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    return df if len(df) and "time" in df.columns else None


def fold(levels: pd.DataFrame, run_dir: str, windows: list[Window]) -> tuple[pd.DataFrame, dict[float, str]]:
    """Add the client and server columns to ``levels``; returns it and {level: why the client was saturated}."""
    reasons: dict[float, str] = {}
    by_level = {float(w.level): w for w in windows}
    hdf = _read(os.path.join(run_dir, HEALTH_CSV))
    sdf = _read(os.path.join(run_dir, SERVER_CSV))
    if hdf is None and sdf is None:
        return levels, reasons
    levels = levels.copy()
    sat, cpu, lag = [], [], []
    means: dict[str, list[float]] = {c: [] for c in SERVER_COLUMNS.values()}
    for lvl in levels["level"].astype(float):
        w = by_level.get(lvl)
        if hdf is not None and w is not None:
            # the measurement window: its requests start after the warm-up, so a stall before (the ramp
            # spawning the level's users) cannot touch them; a client saturated for longer shows here too
            part = hdf[(hdf["time"] >= w.start) & (hdf["time"] <= w.end)]
            samples = [health.Sample(float(r.time), str(r.worker), float(r.cpu_pct), float(r.loop_lag_p99_ms),
                                     float(r.loop_lag_max_ms)) for r in part.itertuples()]
            bad, why = health.verdict(samples)
            if bad:
                reasons[lvl] = why
            sat.append(bad if samples else np.nan)
            cpu.append(float(part["cpu_pct"].max()) if len(part) else np.nan)
            lag.append(health.lag_p99(part["loop_lag_p99_ms"].astype(float).tolist()) if len(part) else np.nan)
        else:
            sat.append(np.nan)
            cpu.append(np.nan)
            lag.append(np.nan)
        for src, col in SERVER_COLUMNS.items():
            value = np.nan
            if sdf is not None and w is not None and src in sdf.columns:
                part = sdf[(sdf["time"] >= w.start) & (sdf["time"] <= w.end)][src].astype(float).dropna()
                value = float(part.mean()) if len(part) else np.nan
            means[col].append(value)
    if hdf is not None:
        levels["client_saturated"] = sat
        levels["client_cpu_max_pct"] = cpu
        levels["client_lag_p99_ms"] = lag
    if sdf is not None:
        for col, values in means.items():
            levels[col] = values
    return levels, reasons


def server_plot(levels: pd.DataFrame, out_dir: str, mode: str) -> str | None:
    """plots/server_metrics.png: the engine's running and waiting requests and KV-cache use against the level."""
    if not any(c in levels.columns and levels[c].notna().any() for c in SERVER_COLUMNS.values()):
        return None
    from tokenswarm.report import plots

    os.makedirs(out_dir, exist_ok=True)
    fig, ax = plots._figure()
    lv = levels["level"].astype(float).tolist()
    for col, label, style in (("server_running", "running", "-"), ("server_waiting", "waiting", "--")):
        x, y = plots._xy(levels, col)
        if len(x):
            ax.plot(x, y, marker="o", linestyle=style, label=f"requests {label}")
    plots._level_axis(ax, lv, mode)
    ax.set_ylabel("Requests at the engine (mean)")
    plots._ylim0(ax)
    x, y = plots._xy(levels, "server_kv_cache_usage")
    handles: list[Any] = []
    if len(x):
        ax2 = ax.twinx()
        handles = ax2.plot(x, y * 100.0, marker="s", color="#8e44ad", label="KV cache used (%)")
        ax2.set_ylabel("KV cache used (%)")
        ax2.set_ylim(0, 105)
    lines = ax.get_legend_handles_labels()[0] + handles
    ax.legend(lines, [h.get_label() for h in lines], fontsize=8, loc="upper left")
    ax.set_title("Engine metrics (server_metrics.csv)", fontsize=10)
    return plots._save(fig, os.path.join(out_dir, "server_metrics.png"))


def turn_table(req_path: str) -> pd.DataFrame | None:
    """Multi-turn runs: per turn index, requests, TTFT p50/p99 (ms), mean input tokens and cache-hit share
    (from requests.csv's ``turn`` column); None when the run had no turns."""
    try:
        df = pd.read_csv(req_path, usecols=["status", "turn", "ttft_ms", "input_tokens", "cached_tokens"])
    except (ValueError, OSError):
        return None
    df = df[(df["status"] == "ok") & df["turn"].notna()]
    if df.empty:
        return None
    rows = []
    for turn, g in df.groupby("turn"):
        t = g["ttft_ms"].dropna().to_numpy(float)
        inp = g["input_tokens"].fillna(0).sum()
        rows.append({"turn": int(turn), "requests": len(g),
                     "ttft_p50": float(np.percentile(t, 50)) if t.size else np.nan,
                     "ttft_p99": float(np.percentile(t, 99)) if t.size else np.nan,
                     "mean_input_tokens": float(g["input_tokens"].mean()),
                     "cache_hit_ratio": float(g["cached_tokens"].fillna(0).sum() / inp) if inp else np.nan})
    return pd.DataFrame(rows)


def trace_check(req_path: str) -> dict[str, Any]:
    """Trace replay (scheduled send times): how closely actual sends followed the trace's schedule."""
    try:
        df = pd.read_csv(req_path, usecols=["start_time", "scheduled_time", "worker"])
    except (ValueError, OSError):
        return {}
    df = df.dropna(subset=["scheduled_time"])
    if len(df) < 2:
        return {}
    lag = (df["start_time"] - df["scheduled_time"]).to_numpy(float) * 1000.0
    gaps = []
    for _, g in df.sort_values("scheduled_time").groupby("worker"):  # each worker replays its share
        gaps.append(np.abs(np.diff(g["start_time"].to_numpy(float)) - np.diff(g["scheduled_time"].to_numpy(float))))
    gap_err = np.concatenate(gaps) * 1000.0 if gaps else np.empty(0)
    return {"requests": int(len(df)), "send_lag_p50_ms": float(np.percentile(lag, 50)),
            "send_lag_p99_ms": float(np.percentile(lag, 99)), "send_lag_max_ms": float(lag.max()),
            "gap_error_p50_ms": float(np.percentile(gap_err, 50)) if gap_err.size else np.nan,
            "gap_error_p99_ms": float(np.percentile(gap_err, 99)) if gap_err.size else np.nan}
