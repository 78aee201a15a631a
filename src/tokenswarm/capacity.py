"""The capacity search: the highest concurrency (or request rate) whose SLOs hold, and its interval.

:class:`CapacitySearch` decides which level to probe next from the verdicts of the probes so far
(:func:`tokenswarm.report.levels.judge`: each probe runs until its 95 % intervals tell ``holds`` or ``fails``,
or until its longest duration, when its point estimate decides and the probe is marked undecided):

1. **Bracket.** The first probe is the bracket's low end. While probes hold, the level doubles (never past
   the bracket's high end); while they fail, it halves (never below the smallest level: 1 user, or the low end
   / 64 req/s). The bracket is the highest level that held and the lowest that failed above it.
2. **Bisect** the bracket until its two ends are within the resolution: one user, or ``resolution_pct`` of
   the level that held (rates; concurrency too, when that is more than one user).

The search ends with an answer (:func:`answer`), or "undecided" when its budget of probes or time ran out
first, with the reason. The answer's interval inverts the probes' intervals: across the probed levels, the
pessimistic bound of each SLO's figure (the upper bound of a latency, the lower bound of an attainment) is
joined by straight lines, and so is the optimistic one; where they cross the limit are the interval's low
and high ends (the point estimates' crossing is the estimate). The SLO that binds first sets the answer.
Pure: the load shape (:class:`tokenswarm.loadgen.shapes.LevelShape`) drives it during a run (in rate mode it
waits between a failing probe and a lower one until the failing probe's requests have ended:
:meth:`tokenswarm.loadgen.controller.RunController.hold`), and the report
(:mod:`tokenswarm.report.capacity`) writes capacity.json from the levels' final intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"
DEFAULT_RESOLUTION_PCT = 5.0
DEFAULT_MAX_PROBES = 20


@dataclass
class Probe:
    """One probed level: its verdict (``holds``/``fails``), whether its intervals decided it (else its point
    estimate did), and when it ran."""

    level: float
    verdict: str
    decided: bool = True
    seconds: float = 0.0


@dataclass
class CapacitySearch:
    """Bracket, then bisect (module docstring). ``low``/``high``: the bracket to start from (levels, users or
    req/s); ``integers``: levels are user counts."""

    low: float
    high: float
    integers: bool = True
    resolution_pct: float = DEFAULT_RESOLUTION_PCT
    max_probes: int = DEFAULT_MAX_PROBES
    budget_s: float | None = None
    probes: list[Probe] = field(default_factory=list)
    reason: str = ""  # why the search stopped without a bracket narrow enough, when it did

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(f"a capacity search needs 0 < low <= high, got {self.low:g}..{self.high:g}")
        self.floor = 1.0 if self.integers else self.low / 64.0

    # -- what is known ---------------------------------------------------------------------
    @property
    def held(self) -> float | None:
        """The highest level that held."""
        return max((p.level for p in self.probes if p.verdict == HOLDS), default=None)

    @property
    def failed_above(self) -> float | None:
        """The lowest level that failed above the highest that held (any failing level if none held)."""
        h = self.held
        return min((p.level for p in self.probes if p.verdict == FAILS and (h is None or p.level > h)), default=None)

    def _round(self, level: float) -> float:
        return float(max(int(round(level)), 1)) if self.integers else float(f"{level:.4g}")

    def _narrow(self, lo: float, hi: float) -> bool:
        step = max(1.0 if self.integers else 0.0, self.resolution_pct / 100.0 * lo)
        return hi - lo <= step + 1e-12

    # -- the next probe ----------------------------------------------------------------------
    def next_level(self, elapsed_s: float = 0.0) -> float | None:
        """The level to probe next, or None when the search is over (see :attr:`reason` and :func:`answer`)."""
        if not self.probes:
            return self._round(self.low)
        if len(self.probes) >= self.max_probes:
            self.reason = f"the budget of {self.max_probes} probes ran out"
            return None
        if self.budget_s is not None and elapsed_s >= self.budget_s:
            self.reason = f"the time budget of {self.budget_s:g} s ran out"
            return None
        h, f = self.held, self.failed_above
        tried = {p.level for p in self.probes}
        if h is None:  # nothing held yet: halve below the lowest failure
            if f is None or f <= self.floor:
                return None  # the smallest level fails: no level meets the SLOs
            nxt = self._round(max(f / 2.0, self.floor))
            return None if nxt in tried else nxt
        if f is None:  # everything held so far: double, up to the bracket's top
            if h >= self.high:
                return None  # the whole bracket holds
            return self._round(min(h * 2.0, self.high))
        if self._narrow(h, f):
            return None
        mid = self._round((h + f) / 2.0)
        if mid in tried or mid <= h or mid >= f:
            return None
        return mid

    def record(self, level: float, verdict: str, decided: bool = True, seconds: float = 0.0) -> None:
        """A probe's verdict (``holds`` or ``fails``; an undecided probe passes its point estimate's verdict
        with ``decided`` False)."""
        if verdict not in (HOLDS, FAILS):
            raise ValueError(f"a probe's verdict is holds or fails, got {verdict!r}")
        self.probes.append(Probe(level, verdict, decided, seconds))

    def status(self) -> str:
        """``found`` (a bracket within the resolution), ``none`` (the smallest level fails), ``at_least`` (the
        whole bracket holds), or ``undecided`` (the budget ran out first, :attr:`reason` says which)."""
        h, f = self.held, self.failed_above
        if h is None:
            return "none" if f is not None and f <= self.floor else UNDECIDED
        if f is None:
            return "at_least" if h >= self.high else UNDECIDED
        if self._narrow(h, f) or self._round((h + f) / 2.0) in (h, f):
            return "found"
        return UNDECIDED


# -- the answer's interval ---------------------------------------------------------------------
def crossing(levels: list[float], values: list[float], limit: float, lower_is_better: bool = True) -> float:
    """Where the piecewise-linear curve through (level, value) first crosses ``limit`` from the good side to the
    bad (value > limit for a latency, < limit for an attainment): the level, interpolated; the last level when
    the curve never goes bad; the first level (or less) when it starts bad; NaN without a known point."""
    pts = sorted((lv, v) for lv, v in zip(levels, values) if math.isfinite(v))
    if not pts:
        return math.nan

    def bad(v: float) -> bool:
        return v > limit if lower_is_better else v < limit

    if bad(pts[0][1]):
        return pts[0][0]
    for (l0, v0), (l1, v1) in zip(pts, pts[1:]):
        if bad(v1):
            return l0 + (limit - v0) / (v1 - v0) * (l1 - l0) if v1 != v0 else l0
    return pts[-1][0]


def answer(search: CapacitySearch, figures: dict[float, dict[str, tuple[float, float, float]]],
           targets: dict[str, float], slo_attainment: float | None) -> dict[str, Any]:
    """capacity.json's answer: ``max_level`` (the highest level that held), ``ci_low``/``ci_high`` (the
    inverted probe intervals, see the module docstring), ``estimate`` (the point curves' crossing),
    ``status``, ``binding`` (the SLO that set it) and ``probes``. ``figures``: per probed level, per SLO key
    (``ttft_p99``; ``slo_attainment`` in percent), (estimate, low, high)."""
    levels = sorted(figures)
    keys = list(targets) + (["slo_attainment"] if slo_attainment is not None else [])
    best: tuple[float, float, float, str] | None = None
    for key in keys:
        lower_better = key != "slo_attainment"
        limit = targets[key] if lower_better else 100.0 * slo_attainment  # type: ignore[operator]
        est = [figures[lv].get(key, (math.nan,) * 3)[0] for lv in levels]
        low = [figures[lv].get(key, (math.nan,) * 3)[1] for lv in levels]
        high = [figures[lv].get(key, (math.nan,) * 3)[2] for lv in levels]
        pessimistic, optimistic = (high, low) if lower_better else (low, high)
        point = crossing(levels, est, limit, lower_better)
        c_lo = crossing(levels, pessimistic, limit, lower_better)
        c_hi = crossing(levels, optimistic, limit, lower_better)
        if best is None or (math.isfinite(point) and point < best[0]):
            best = (point, c_lo, c_hi, key)
    point, c_lo, c_hi, key = best if best is not None else (math.nan, math.nan, math.nan, "")

    def level_of(x: float) -> float | None:
        if not math.isfinite(x):
            return None
        return float(math.floor(x + 1e-9)) if search.integers else float(f"{x:.4g}")

    return {
        "status": search.status(),
        "reason": search.reason or None,
        "max_level": search.held,
        "failed_above": search.failed_above,
        "estimate": level_of(point),
        "ci_low": level_of(min(c_lo, point) if math.isfinite(c_lo) and math.isfinite(point) else c_lo),
        "ci_high": level_of(max(c_hi, point) if math.isfinite(c_hi) and math.isfinite(point) else c_hi),
        "binding": key or None,
        "probes": [{"level": p.level, "verdict": p.verdict, "decided": p.decided, "seconds": round(p.seconds, 1)}
                   for p in search.probes],
    }
