"""Where a sweep saturates (the knee), the highest level meeting the SLOs, and the flagged levels.

The **saturation level** is the lowest level L (levels sorted ascending,
those without a positive output throughput or a TTFT p99 left out) such that

1. no later level's output throughput exceeds L's by ``knee_pct`` percent or
   more (default 10 %: ``max(T[j > L]) < T[L] * (1 + knee_pct / 100)``), and
2. TTFT p99 keeps rising past L: the highest TTFT p99 of the later levels
   exceeds L's by more than ``TTFT_RISE_PCT`` (10 %).

That is: beyond L, more load buys less than ``knee_pct`` % more output and
costs a longer tail TTFT. Comparing with the *best* later level (not just the
next one) keeps one noisy dip in a still-rising curve from being called the
knee; the last level is never the knee (nothing after it shows the
flattening). No level qualifies (None, with the reason) when the sweep has
fewer than two usable levels, when throughput still grows by ``knee_pct`` %
up to the end, or when it flattens while TTFT p99 stays flat (the limit is
then not the server's queue; look at the flags).

The **highest level meeting the SLOs** is the highest level whose
``meets_slo`` is true (see :mod:`tokenswarm.report.levels`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

DEFAULT_KNEE_PCT = 10.0
TTFT_RISE_PCT = 10.0


@dataclass
class Knee:
    """The result of :func:`find_knee`: the saturation level, or None with the reason."""

    level: float | None
    reason: str
    output_throughput_tok_s: float | None = None  # at the saturation level
    later_gain_pct: float | None = None  # best later output throughput over the level's, percent
    ttft_p99_ms: float | None = None  # at the saturation level
    later_ttft_rise_pct: float | None = None  # highest later TTFT p99 over the level's, percent

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready values (an infinite rise, from a TTFT p99 of 0, becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _usable(levels: pd.DataFrame) -> pd.DataFrame:
    need = ["level", "output_throughput_tok_s", "ttft_p99_ms"]
    if levels.empty or not set(need) <= set(levels.columns):
        return levels.iloc[0:0]
    d = levels[need].astype(float)
    d = d[(d["output_throughput_tok_s"] > 0) & d["ttft_p99_ms"].notna()]
    return d.sort_values("level").reset_index(drop=True)


def find_knee(levels: pd.DataFrame, knee_pct: float = DEFAULT_KNEE_PCT,
              ttft_rise_pct: float = TTFT_RISE_PCT, not_run: Sequence[float] = (), stopped: bool = False) -> Knee:
    """The saturation level of a sweep's levels table (columns ``level``, ``output_throughput_tok_s``,
    ``ttft_p99_ms``), by the rule in the module docstring. ``stopped``: the sweep stopped before its end
    (Ctrl-C, a crash), its last level cut short, and ``not_run`` the planned levels it never reached; a knee not
    found then says the sweep stopped, not that saturation lies beyond the plan."""
    d = _usable(levels)
    if stopped or not_run:
        knee = find_knee(levels, knee_pct, ttft_rise_pct)
        if knee.level is None:
            lv = levels["level"].astype(float) if len(levels) and "level" in levels.columns else []
            last = f" at level {max(lv):g}" if len(lv) else ""
            rest = f"; planned but not run: {', '.join(f'{x:g}' for x in not_run)}" if not_run else ""
            knee.reason = f"not reached before the sweep stopped{last}{rest}"
        return knee
    if len(d) < 2:
        return Knee(None, f"not enough levels to see a knee ({len(d)} with output throughput and TTFT p99; "
                          "a sweep needs at least 2)")
    t = d["output_throughput_tok_s"].to_numpy()
    p = d["ttft_p99_ms"].to_numpy()
    lv = d["level"].to_numpy()
    flattened_without_rise = False
    for i in range(len(d) - 1):
        gain = (t[i + 1:].max() / t[i] - 1.0) * 100.0
        if gain >= knee_pct:
            continue
        rise = (p[i + 1:].max() / p[i] - 1.0) * 100.0 if p[i] > 0 else math.inf
        if rise > ttft_rise_pct:
            return Knee(float(lv[i]), "output throughput stops growing while TTFT p99 rises",
                        float(t[i]), float(gain), float(p[i]), float(rise))
        flattened_without_rise = True
    if flattened_without_rise:
        return Knee(None, f"output throughput flattens but TTFT p99 does not rise by more than "
                          f"{ttft_rise_pct:g} %: the server's queue is not what limits it (see the flags)")
    return Knee(None, f"output throughput still grows by {knee_pct:g} % or more up to the last level "
                      f"({lv[-1]:g}): saturation is beyond this sweep")


def max_level_meeting_slo(levels: pd.DataFrame) -> float | None:
    """The highest level whose ``meets_slo`` is true (None without SLOs or when no level meets them)."""
    if levels.empty or "meets_slo" not in levels.columns:
        return None
    ok = levels[levels["meets_slo"].map(_truthy)]
    return float(ok["level"].max()) if len(ok) else None


def flagged(levels: pd.DataFrame, column: str) -> list[float]:
    """The levels whose boolean ``column`` (``under_target``, ``late``) is true."""
    if levels.empty or column not in levels.columns:
        return []
    return [float(x) for x in levels.loc[levels[column].map(_truthy), "level"]]


def _truthy(v: Any) -> bool:
    """True for True/'True'/'true'/1 (levels.csv read back gives strings or objects)."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)
