"""What the GPU spent per level, from a DCGM exporter scraped during the run (gpu_metrics.csv).

gpu_metrics.csv (written by :class:`tokenswarm.loadgen.enginescrape.EngineMetricsSampler` with
:data:`tokenswarm.enginemetrics.GPU_FEED`; columns :data:`tokenswarm.gpumetrics.CSV_COLUMNS`) has one row per
GPU and scrape. :func:`gpu_levels` adds to each level, over its measurement window
(:class:`tokenswarm.report.levels.Window`, warm-up excluded):

* ``gpu_count``: the GPUs that reported in the window;
* ``gpu_power_w``: mean power draw, W, summed over the GPUs (the mean over the window's scrapes of each
  scrape's sum);
* ``energy_per_output_token_j``: J per output token, the energy the GPUs spent per second over the window
  divided by the level's ``output_throughput_tok_s``. The energy comes from each GPU's energy counter
  (``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``): its increase between the scrapes nearest the window's start and
  end (within ``EDGE_TOLERANCE_S``), over the time between them; where a GPU has no counter (or it went back:
  the driver reloaded), its power integrated over the window's scrapes (trapezoids) over their span;
* ``gpu_util_pct``: mean GPU utilisation, percent, over the GPUs and the window's scrapes;
* ``gpu_memory_used_mib``: framebuffer memory used, MiB, summed over the GPUs (mean over the scrapes);
* ``output_throughput_per_gpu_tok_s``: the level's ``output_throughput_tok_s`` over ``gpu_count``.

The same definitions as AIPerf's GPU telemetry (power and energy from DCGM) and vLLM bench's energy (NVML's
total energy counter), per level. NaN where a level has no scrape in its window. Errors:
:class:`~tokenswarm.report.errors.ReportError` naming the file, column and row. Pure pandas/numpy.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tokenswarm import gpumetrics
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import Window
from tokenswarm.report.readers import read_csv_with

GPU_CSV = "gpu_metrics.csv"
EDGE_TOLERANCE_S = 5.0  # an energy counter read further than this from a window's edge is not used there
#: the levels.csv columns :func:`gpu_levels` adds, in order
GPU_COLUMNS: tuple[str, ...] = ("gpu_count", "gpu_power_w", "energy_per_output_token_j", "gpu_util_pct",
                                "gpu_memory_used_mib", "output_throughput_per_gpu_tok_s")


def read_gpu_metrics(path: str) -> pd.DataFrame | None:
    """gpu_metrics.csv with numbers as floats and ``host``/``gpu`` as text (None when the file is missing or
    has no rows). Raises :class:`ReportError` when it lacks ``time`` or ``gpu``, or a cell of a numeric
    column is not a number."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    df = read_csv_with(path, GPU_CSV, "time", "")
    if "gpu" not in df.columns:
        raise ReportError(f"{path}: no 'gpu' column")
    for col in ("time", *gpumetrics.VALUES):
        if col not in df.columns:
            df[col] = np.nan
            continue
        conv = pd.to_numeric(df[col], errors="coerce")
        bad = conv.isna() & df[col].notna() & (df[col].astype(str) != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReportError(f"{path}: column {col!r}, data row {i + 1}: {df[col].iloc[i]!r} is not a number")
        df[col] = conv.astype("float64")
    df["host"] = df["host"].fillna("").astype(str) if "host" in df.columns else ""
    df["gpu"] = df["gpu"].fillna("").astype(str)
    if not len(df):
        return None
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def _nearest(times: np.ndarray, t: float, tolerance_s: float) -> int | None:
    if not len(times):
        return None
    i = int(np.argmin(np.abs(times - t)))
    return i if abs(times[i] - t) <= tolerance_s else None


def _energy_rate_w(gpu: pd.DataFrame, w: Window, tolerance_s: float) -> float:
    """One GPU's mean power over ``w`` from its energy counter (J/s), else from its power samples; NaN when
    neither tells."""
    counted = gpu.dropna(subset=["energy_j"])
    times = counted["time"].to_numpy(float)
    a, b = _nearest(times, w.start, tolerance_s), _nearest(times, w.end, tolerance_s)
    if a is not None and b is not None and times[b] > times[a]:
        e = counted["energy_j"].to_numpy(float)
        if e[b] >= e[a]:
            return float((e[b] - e[a]) / (times[b] - times[a]))
    inside = gpu[(gpu["time"] >= w.start) & (gpu["time"] <= w.end)].dropna(subset=["power_w"])
    t, p = inside["time"].to_numpy(float), inside["power_w"].to_numpy(float)
    if len(t) >= 2 and t[-1] > t[0]:
        return float(np.trapezoid(p, t) / (t[-1] - t[0]))
    return float(p.mean()) if len(p) else np.nan


def gpu_figures(gpu: pd.DataFrame | None, w: Window | None, tolerance_s: float = EDGE_TOLERANCE_S) -> dict[str, float]:
    """:data:`GPU_COLUMNS` but the per-token and per-GPU ones for one window, plus ``gpu_energy_rate_w`` (the
    GPUs' summed mean power over the window from their energy counters or power integrated); NaN when the
    window has no scrape."""
    out = {"gpu_count": np.nan, "gpu_power_w": np.nan, "gpu_util_pct": np.nan, "gpu_memory_used_mib": np.nan,
           "gpu_energy_rate_w": np.nan}
    if gpu is None or w is None or not len(gpu):
        return out
    inside = gpu[(gpu["time"] >= w.start) & (gpu["time"] <= w.end)]
    if not len(inside):
        return out
    keys = inside[["host", "gpu"]].drop_duplicates()
    out["gpu_count"] = float(len(keys))
    per_scrape = inside.groupby("time")
    if inside["power_w"].notna().any():
        out["gpu_power_w"] = float(per_scrape["power_w"].sum(min_count=1).mean())
    if inside["util_pct"].notna().any():
        out["gpu_util_pct"] = float(inside["util_pct"].mean())
    if inside["memory_used_mib"].notna().any():
        out["gpu_memory_used_mib"] = float(per_scrape["memory_used_mib"].sum(min_count=1).mean())
    rates = [_energy_rate_w(g, w, tolerance_s) for (h, n), g in gpu.groupby(["host", "gpu"])
             if ((keys["host"] == h) & (keys["gpu"] == n)).any()]
    known = [r for r in rates if not np.isnan(r)]
    if known:
        out["gpu_energy_rate_w"] = float(sum(known))
    return out


def gpu_levels(levels: pd.DataFrame, gpu: pd.DataFrame | None, windows: list[Window],
               tolerance_s: float = EDGE_TOLERANCE_S) -> pd.DataFrame:
    """``levels`` (levels.csv's rows, with ``level`` and ``output_throughput_tok_s``) plus :data:`GPU_COLUMNS`
    per level (see the module's definitions); ``levels`` unchanged when ``gpu`` is None or empty."""
    if gpu is None or not len(gpu):
        return levels
    by_level = {float(w.level): w for w in windows}
    rows = []
    for rec in levels.to_dict("records"):
        w = by_level.get(float(rec["level"]))
        f = gpu_figures(gpu if w is not None else None, w, tolerance_s)
        tput = float(rec.get("output_throughput_tok_s", np.nan))
        rate = f.pop("gpu_energy_rate_w")
        f["energy_per_output_token_j"] = rate / tput if tput > 0 else np.nan
        f["output_throughput_per_gpu_tok_s"] = tput / f["gpu_count"] if f["gpu_count"] > 0 else np.nan
        rows.append(f)
    out = levels.copy()
    for col in GPU_COLUMNS:
        out[col] = [r[col] for r in rows]
    return out
