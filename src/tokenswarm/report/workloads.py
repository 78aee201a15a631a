"""Figures particular to a workload, from requests.csv: multi-turn TTFT by turn, and how a trace was replayed.

* :func:`turn_table` (``--turns``): per turn index, the ``ok`` requests, TTFT p50 and p99 (ms), mean prompt
  tokens and the share of prompt tokens served from the prefix cache (percent): later turns carry the whole
  history, so they are longer and more of them is cached.
* :func:`trace_check` (a trace workload): actual minus scheduled send (ms, p50/p99/max) and how far the gaps
  between a worker's sends drifted from the trace's gaps (ms, p50/p99).

Both read only the columns they need and return None / {} when the file lacks them (an older requests.csv).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def turn_table(req_path: str) -> pd.DataFrame | None:
    """Multi-turn runs: one row per turn index (columns ``turn``, ``requests``, ``ttft_p50_ms``,
    ``ttft_p99_ms``, ``mean_input_tokens``, ``cache_hit_pct``) from requests.csv's ``turn`` column; None when
    the run had no turns."""
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
                     "ttft_p50_ms": float(np.percentile(t, 50)) if t.size else np.nan,
                     "ttft_p99_ms": float(np.percentile(t, 99)) if t.size else np.nan,
                     "mean_input_tokens": float(g["input_tokens"].mean()),
                     "cache_hit_pct": float(100.0 * g["cached_tokens"].fillna(0).sum() / inp) if inp else np.nan})
    return pd.DataFrame(rows)


def trace_check(req_path: str) -> dict[str, Any]:
    """Trace replay (scheduled send times): how closely actual sends followed the trace's schedule. Keys
    ``requests``, ``send_lag_p50_ms``, ``send_lag_p99_ms``, ``send_lag_max_ms``, ``gap_error_p50_ms``,
    ``gap_error_p99_ms``; {} with fewer than two scheduled requests."""
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
