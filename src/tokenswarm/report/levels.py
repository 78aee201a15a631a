"""Per-level statistics from requests.csv, computed exactly (numpy linear interpolation).

A *level* is one target concurrency (or rate) of a run. Its measurement
window runs from the level's start plus the warm-up to the level's end (from
run.json's timeline; from the records themselves when there is none).

* Latency statistics use the ``ok`` requests that started in the level after
  its warm-up.
* Output throughput counts the output tokens generated inside the window by
  ``ok`` requests, whichever level they started in: a request's first token
  at its TTFT, the others spread evenly up to its last token (exact for a
  steady stream; a request overlapping the window's edge contributes its
  share). Counting whole requests at completion instead makes the figure
  jump by a full wave of requests when requests are long next to the window.
  Input throughput counts a request's prompt when its first token (the end of
  its prefill) falls in the window; request throughput, requests completed in it.
* Achieved concurrency is the time-averaged number of requests in flight
  inside the window (from each request's send and close times).
* Goodput is the rate of window-completed requests meeting every SLO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99, 99.9)
METRICS = ("ttft", "tpot", "itl", "e2e")
UNDER_TARGET = 0.95  # a closed-loop level holding fewer in flight than this share of its target is flagged

NUMERIC = (
    "start_time", "level", "user", "http_status", "ttft_ms", "ttft_visible_ms", "tpot_ms", "e2e_ms", "close_ms",
    "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "output_events", "scheduled_time",
    "connect_ms",
)


def pct_name(p: float) -> str:
    return f"p{p:g}".replace(".", "")  # p50, p99, p999


def load_requests(path: str) -> pd.DataFrame:
    """requests.csv as a DataFrame with numeric columns typed (empty cells are NaN)."""
    df = pd.read_csv(path, dtype={"request_id": str, "worker": str, "error": str, "itl_ms": str,
                                  "prompt_id": str, "token_source": str, "finish_reason": str, "status": str},
                     keep_default_na=False, na_values={c: [""] for c in NUMERIC})
    for col in NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


@dataclass
class Window:
    level: float
    start: float  # epoch seconds, warm-up excluded
    end: float
    level_start: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)


def windows_from(df: pd.DataFrame, timeline: list[dict[str, Any]] | None, warmup_s: float = 0.0) -> list[Window]:
    """Measurement windows per level: from the run's timeline, else from the records' span."""
    out: list[Window] = []
    if timeline:
        for i, seg in enumerate(timeline):
            end = seg.get("end")
            if end is None:
                end = timeline[i + 1]["start"] if i + 1 < len(timeline) else _last_end(df)
            start = seg["start"]
            out.append(Window(seg["level"], min(start + warmup_s, end), end, start))
        return out
    if df.empty:
        return out
    for level, g in df.groupby("level", sort=True):
        start = float(g["start_time"].min())
        end = float((g["start_time"] + g["close_ms"].fillna(0) / 1000.0).max())
        out.append(Window(level, min(start + warmup_s, end), end, start))
    return out


def _last_end(df: pd.DataFrame) -> float:
    if df.empty:
        return 0.0
    return float((df["start_time"] + df["close_ms"].fillna(0) / 1000.0).max())


def _stats(values: np.ndarray, prefix: str, row: dict[str, Any]) -> None:
    if values.size:
        row[f"{prefix}_mean"] = float(values.mean())
        row[f"{prefix}_std"] = float(values.std())
        row[f"{prefix}_min"] = float(values.min())
        row[f"{prefix}_max"] = float(values.max())
        qs = np.percentile(values, PERCENTILES)
        for p, q in zip(PERCENTILES, qs):
            row[f"{prefix}_{pct_name(p)}"] = float(q)
    else:
        for k in ("mean", "std", "min", "max", *(pct_name(p) for p in PERCENTILES)):
            row[f"{prefix}_{k}"] = np.nan


def itl_values(series: pd.Series) -> np.ndarray:
    """All inter-token latencies of the given ``itl_ms`` cells, as one float array."""
    cells = [c for c in series if isinstance(c, str) and c]
    if not cells:
        return np.empty(0)
    return np.array(" ".join(cells).split(), dtype=float)


def _tokens_in_window(first: pd.Series, last: pd.Series, ok: pd.DataFrame, lo: float, hi: float
                      ) -> tuple[float, float]:
    """(input, output) tokens inside [lo, hi): prompts at their first token; outputs spread first..last."""
    f = first.to_numpy(float)
    e = last.to_numpy(float)
    n = ok["output_tokens"].fillna(0).to_numpy(float)
    first_in = (f >= lo) & (f < hi)
    span = e - f
    overlap = np.clip(np.minimum(e, hi) - np.maximum(f, lo), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(span > 0, overlap / span, ((e >= lo) & (e < hi)).astype(float))
    out = float((first_in * np.minimum(n, 1)).sum() + (np.maximum(n - 1, 0) * frac).sum())
    inp = float(ok["input_tokens"].fillna(0).to_numpy(float)[first_in].sum())
    return inp, out


def level_stats(df: pd.DataFrame, windows: list[Window], slo: dict[str, float] | None = None,
                mode: str = "concurrency") -> pd.DataFrame:
    """One row per level: counts, throughput, goodput, latency statistics, lengths, concurrency."""
    slo = slo or {}
    ok = df[df["status"] == "ok"]
    ok_end = ok["start_time"] + ok["e2e_ms"].fillna(0) / 1000.0
    ok_first = ok["start_time"] + ok["ttft_ms"].fillna(0) / 1000.0
    close_end = df["start_time"] + df["close_ms"].fillna(0) / 1000.0
    rows = []
    for w in windows:
        mine = df[df["level"] == w.level]
        in_level = mine[mine["start_time"] >= w.start] if w.start > w.level_start else mine
        sample = in_level[in_level["status"] == "ok"]
        secs = w.seconds
        done = ok[(ok_end >= w.start) & (ok_end < w.end)] if secs > 0 else ok.iloc[0:0]
        row: dict[str, Any] = {
            "level": w.level,
            "mode": mode,
            "requests": int(len(mine)),
            "completed": int((mine["status"] == "ok").sum()),
            "failed": int((~mine["status"].isin(["ok", "cancelled"])).sum()),
            "cancelled": int((mine["status"] == "cancelled").sum()),
            "window_s": secs,
        }
        in_tok, out_tok = _tokens_in_window(ok_first, ok_end, ok, w.start, w.end) if secs else (0.0, 0.0)
        row["request_throughput"] = len(done) / secs if secs else np.nan
        row["input_throughput"] = in_tok / secs if secs else np.nan
        row["output_throughput"] = out_tok / secs if secs else np.nan
        row["total_throughput"] = (in_tok + out_tok) / secs if secs else np.nan
        if slo:
            good = done
            for key, limit in slo.items():
                col = f"{key}_ms"
                good = good[good[col].isna() | (good[col] <= limit)] if key == "tpot" else good[good[col] <= limit]
            row["goodput"] = len(good) / secs if secs else np.nan
        for m in METRICS:
            vals = itl_values(sample["itl_ms"]) if m == "itl" else sample[f"{m}_ms"].dropna().to_numpy(float)
            _stats(vals, m, row)
        row["mean_input_len"] = float(sample["input_tokens"].mean()) if len(sample) else np.nan
        row["mean_output_len"] = float(sample["output_tokens"].mean()) if len(sample) else np.nan
        # time-averaged requests in flight inside the window
        if secs:
            lo = np.maximum(df["start_time"].to_numpy(float), w.start)
            hi = np.minimum(close_end.to_numpy(float), w.end)
            row["achieved_concurrency"] = float(np.clip(hi - lo, 0, None).sum() / secs)
        else:
            row["achieved_concurrency"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)
