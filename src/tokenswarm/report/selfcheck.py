"""The load generators' self-check folded into the levels: how exact were the client's timings, and was the
load what was asked?

The two verdicts (:mod:`tokenswarm.selfcheck`) come from levels.csv's own measured columns
(``ttft_error_bound_p99_ms``, ``ttft_exact_1ms_pct``, ``load_shortfall_pct``, ``late``; computed in
:mod:`tokenswarm.report.levels`). The evidence beside them comes from ``client_health.csv`` (each
load-generating process, every second: CPU % of a core, event-loop lag p99 and max in ms) -> per level
``client_strained`` (:func:`tokenswarm.selfcheck.strain` over the samples inside the level's measurement
window), ``client_cpu_max_pct`` (the highest sample), ``client_lag_p99_ms``
(:func:`tokenswarm.selfcheck.lag_p99` of the samples). The file is optional: without it those three columns
are absent; a level without samples gets empty cells. An unreadable file, or one without a ``time`` column,
counts as absent.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tokenswarm import selfcheck as verdicts
from tokenswarm.report.levels import Window

HEALTH_CSV = "client_health.csv"


def read_samples(path: str) -> pd.DataFrame | None:
    """client_health.csv as a DataFrame; None when it is missing, empty, unreadable or has no ``time``."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    return df if len(df) and "time" in df.columns else None


def client_checks(levels: pd.DataFrame) -> dict[float, dict[str, object]]:
    """{level: {"timing": line, "timing_uncertain": flag, "load": line, "load_short": flag, "evidence": line}}
    for each level, from levels.csv's columns; a level without the figures (an older run folder) has empty
    lines and False flags."""
    out: dict[float, dict[str, object]] = {}
    for r in levels.to_dict("records"):
        over = r.get("ttft_bound_over_5ms")
        timing = verdicts.timing_verdict(float(r.get("ttft_error_bound_p99_ms", np.nan)),
                                         float(r.get("ttft_exact_1ms_pct", np.nan)),
                                         int(over) if over is not None and over == over else None)
        late = r.get("late")
        load = verdicts.load_verdict(float(r.get("load_shortfall_pct", np.nan)), bool(late) and late == late)
        out[float(r["level"])] = {"timing": timing[1], "timing_uncertain": timing[0], "load": load[1],
                                  "load_short": load[0], "evidence": str(r.get("client_evidence") or "")}
    return out


def fold_selfcheck(levels: pd.DataFrame, run_dir: str, windows: list[Window]
                   ) -> tuple[pd.DataFrame, dict[float, dict[str, object]]]:
    """``levels`` plus the evidence columns (the module docstring), and :func:`client_checks` of every
    level."""
    reasons: dict[float, str] = {}
    hdf = read_samples(os.path.join(run_dir, HEALTH_CSV))
    if hdf is None:
        return levels, client_checks(levels)
    by_level = {float(w.level): w for w in windows}
    sat, cpu, lag = [], [], []
    for lvl in levels["level"].astype(float):
        w = by_level.get(lvl)
        if w is None:
            sat.append(np.nan)
            cpu.append(np.nan)
            lag.append(np.nan)
            continue
        # the measurement window: its requests start after the warm-up, so a stall before (the ramp
        # spawning the level's users) cannot touch them; a client saturated for longer shows here too
        part = hdf[(hdf["time"] >= w.start) & (hdf["time"] <= w.end)]
        samples = [verdicts.Sample(float(r.time), str(r.worker), float(r.cpu_pct), float(r.loop_lag_p99_ms),
                                 float(r.loop_lag_max_ms)) for r in part.itertuples()]
        bad, why = verdicts.strain(samples)
        if bad:
            reasons[lvl] = why
        sat.append(bad if samples else np.nan)
        cpu.append(float(part["cpu_pct"].max()) if len(part) else np.nan)
        lag.append(verdicts.lag_p99(part["loop_lag_p99_ms"].astype(float).tolist()) if len(part) else np.nan)
    levels = levels.copy()
    levels["client_strained"] = sat
    levels["client_cpu_max_pct"] = cpu
    levels["client_lag_p99_ms"] = lag
    checks = client_checks(levels)
    for lvl, why in reasons.items():
        if lvl in checks:
            checks[lvl]["evidence"] = why
    return levels, checks
