"""Is B better than A? The ratio of two runs' figures at one level, its 95 % interval, and a verdict.

Each run's figure comes with its own 95 % interval (:mod:`tokenswarm.report.intervals`, batch means over
time blocks, so the dependence between neighbouring requests is in it). The two runs are independent, so on
the log scale their variances add (the delta method for a ratio of independent estimates; e.g. Casella &
Berger, *Statistical Inference*, 2nd ed., section 5.5.4): with ``se = (ln high - ln low) / (2 * 1.96)`` for
each, ``ln(B/A) +/- 1.96 * sqrt(se_A^2 + se_B^2)``. An asymmetric interval (a percentile's) enters through
its log-width, which is what it is on that scale.

Verdicts, for a figure where lower is better (latency) or higher is better (throughput):

* ``better`` / ``worse``: the interval of B/A excludes 1 (B better, or worse, than A);
* ``no detectable difference``: it includes 1 and lies within ``1 +/- margin`` (default 5 %): any difference
  is smaller than the margin;
* ``undecided``: it includes 1 but reaches beyond the margin; the verdict says about how many more
  requests per run would decide it, from the interval's width shrinking as ``1 / sqrt(requests)``.

Their error rates, measured (tests/unit/report/test_verdicts.py, seeded): two identical engines read ``no
detectable difference`` in at least 90 % of repeats, and engines 5 % apart in TPOT are told apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenswarm.report.intervals import Interval

Z975 = 1.959964
DEFAULT_MARGIN = 0.05
BETTER, WORSE, SAME, UNDECIDED = "better", "worse", "no detectable difference", "undecided"


@dataclass(frozen=True)
class Verdict:
    """B/A with its 95 % interval, the verdict, and (undecided) about how many more requests per run."""

    ratio: float
    low: float
    high: float
    verdict: str
    more_requests: int | None = None

    def text(self) -> str:
        if math.isnan(self.ratio):
            return "-"
        out = f"{self.ratio:.3f} ({self.low:.3f}-{self.high:.3f}) {self.verdict}"
        if self.verdict == UNDECIDED and self.more_requests:
            out += f": about {self.more_requests:,} more requests per run would decide"
        return out


NONE = Verdict(math.nan, math.nan, math.nan, UNDECIDED)


def _log_se(iv: Interval) -> float:
    if not (iv.low > 0 and iv.high > 0 and iv.estimate > 0):
        return math.nan
    return (math.log(iv.high) - math.log(iv.low)) / (2 * Z975)


def compare_figures(a: Interval, b: Interval, lower_is_better: bool, requests: int = 0,
                    margin: float = DEFAULT_MARGIN) -> Verdict:
    """The verdict on B against A for one figure (see the module docstring); ``requests``: how many requests
    each run's figure rests on (for the "how many more" of an undecided verdict)."""
    se_a, se_b = _log_se(a), _log_se(b)
    if math.isnan(se_a) or math.isnan(se_b):
        return Verdict(b.estimate / a.estimate if a.estimate else math.nan, math.nan, math.nan, UNDECIDED)
    log_r = math.log(b.estimate / a.estimate)
    half = Z975 * math.hypot(se_a, se_b)
    low, high = math.exp(log_r - half), math.exp(log_r + half)
    ratio = math.exp(log_r)
    if low > 1 or high < 1:
        b_higher = low > 1
        return Verdict(ratio, low, high, BETTER if b_higher != lower_is_better else WORSE)
    bound = math.log(1 + margin)
    if -bound <= log_r - half and log_r + half <= bound:
        return Verdict(ratio, low, high, SAME)
    # undecided: the half-width that would decide, either way (exclude 1, or fit inside the margin)
    needed = max(abs(log_r), bound - abs(log_r))
    more = None
    if requests and needed > 0:
        more = max(int(math.ceil(requests * ((half / needed) ** 2 - 1))), 1)
    return Verdict(ratio, low, high, UNDECIDED, more)
