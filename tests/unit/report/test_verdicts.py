"""compare's verdicts (tokenswarm.report.verdicts): the rules, and their error rates against a known truth. The
error-rate tests are seeded (deterministic); bench/interval_coverage.py prints the rates for any number of pairs."""

import math

import pytest

from tokenswarm.report import verdicts
from tokenswarm.report.intervals import Interval, ci_columns
from tokenswarm.report.levels import level_stats
from tokenswarm.report.synthetic import stochastic_level
from tokenswarm.report.verdicts import BETTER, SAME, UNDECIDED, WORSE, compare_figures


def test_the_rules_and_their_directions():
    a = Interval(100.0, 98.0, 102.0)
    slower = compare_figures(a, Interval(110.0, 108.0, 112.0), lower_is_better=True)
    assert slower.verdict == WORSE and slower.low > 1 and slower.ratio == pytest.approx(1.1)
    assert compare_figures(a, Interval(110.0, 108.0, 112.0), lower_is_better=False).verdict == BETTER  # throughput
    assert compare_figures(a, Interval(100.5, 98.5, 102.5), True).verdict == SAME  # within 1 +/- 5 %
    wide = compare_figures(Interval(100.0, 80.0, 125.0), Interval(102.0, 82.0, 127.0), True, requests=200)
    assert wide.verdict == UNDECIDED and wide.more_requests > 200  # the interval must shrink a lot
    assert "more requests per run would decide" in wide.text()
    unknown = compare_figures(Interval(100.0, 90.0, math.nan), Interval(100.0, 90.0, 110.0), True)
    assert unknown.verdict == UNDECIDED and math.isnan(unknown.low)


def _verdicts(pairs: int, scale_tpot: float) -> list[str]:
    out = []
    for i in range(pairs):
        a_df, a_w = stochastic_level(20_000 + 2 * i, seconds=60.0, sigma_state=0.0)
        b_df, b_w = stochastic_level(20_001 + 2 * i, seconds=60.0, sigma_state=0.0, scale_tpot=scale_tpot)
        a, b = level_stats(a_df, [a_w]).iloc[0], level_stats(b_df, [b_w]).iloc[0]
        lo, hi = ci_columns("tpot_mean_ms")
        v = compare_figures(Interval(a["tpot_mean_ms"], a[lo], a[hi]), Interval(b["tpot_mean_ms"], b[lo], b[hi]),
                            True, int(min(a["completed"], b["completed"])))
        out.append(v.verdict)
    return out


def test_identical_engines_read_no_detectable_difference_and_engines_5_percent_apart_are_told_apart():
    # pairs of levels of ~1,200 requests each (60 s at 20 req/s), TPOT lognormal (sigma 0.2); measured: 80 of 80
    # identical pairs "no detectable difference", 80 of 80 pairs 5 % apart "worse"
    same = _verdicts(80, 1.0)
    assert same.count(SAME) / len(same) >= 0.90, same
    assert (same.count(BETTER) + same.count(WORSE)) / len(same) <= 0.08, same  # false verdicts, 5 % nominal
    apart = _verdicts(80, 1.05)
    assert apart.count(WORSE) / len(apart) >= 0.90, apart  # B 5 % slower: named, the right way round
    assert apart.count(BETTER) == 0


def test_verdict_text_and_no_ratio_without_figures():
    assert verdicts.NONE.text() == "-"
    assert compare_figures(Interval(100.0, 99.0, 101.0), Interval(90.0, 89.0, 91.0), True).text().endswith("better")
