"""The capacity search (tokenswarm.capacity): bracketing, bisecting, when it stops, and the answer's interval."""

import math

import pytest

from tokenswarm.capacity import FAILS, HOLDS, CapacitySearch, answer, crossing


def search_with(truth, low, high, integers=True, **kw):
    """Run a search against ``truth(level) -> holds?``; returns the search and the levels probed in order."""
    s = CapacitySearch(low, high, integers=integers, **kw)
    probed = []
    level = s.next_level()
    while level is not None:
        probed.append(level)
        s.record(level, HOLDS if truth(level) else FAILS)
        level = s.next_level()
    return s, probed


@pytest.mark.parametrize("low,high", [(4, 64), (12, 40), (30, 100), (1, 1024), (16, 17)])
def test_it_finds_the_capacity_from_any_bracket_around_it(low, high):
    s, probed = search_with(lambda lv: lv <= 16, low, high)
    assert (s.held, s.failed_above, s.status()) == (16, 17, "found"), probed
    assert len(probed) == len(set(probed)) <= 12  # no level twice


def test_the_probes_double_then_bisect():
    _s, probed = search_with(lambda lv: lv <= 16, 4, 64)
    assert probed == [4, 8, 16, 32, 24, 20, 18, 17]
    _s, probed = search_with(lambda lv: lv <= 16, 30, 100)
    assert probed == [30, 15, 22, 18, 16, 17]  # halving below the first failure, then bisecting


def test_rates_bisect_to_the_resolution():
    s, probed = search_with(lambda r: r <= 7.3, 1.0, 64.0, integers=False, resolution_pct=5.0)
    assert s.status() == "found" and s.held <= 7.3 < s.failed_above
    assert (s.failed_above - s.held) <= 0.05 * s.held + 1e-9


def test_no_level_meets_the_whole_bracket_meets_and_the_budget_runs_out():
    none, _ = search_with(lambda lv: False, 8, 64)
    assert none.status() == "none" and none.held is None and none.failed_above == 1
    every, probed = search_with(lambda lv: True, 4, 64)
    assert every.status() == "at_least" and probed == [4, 8, 16, 32, 64]
    short, probed = search_with(lambda lv: lv <= 300, 1, 1024, max_probes=5)
    assert short.status() == "undecided" and "5 probes" in short.reason and len(probed) == 5
    with pytest.raises(ValueError, match="0 < low <= high"):
        CapacitySearch(8, 4)
    with pytest.raises(ValueError, match="holds or fails"):
        CapacitySearch(1, 8).record(1, "maybe")


def test_crossing_interpolates_where_the_curve_goes_bad():
    assert crossing([8, 16, 32], [100, 400, 900], 500) == pytest.approx(16 + 100 / 500 * 16)
    assert crossing([8, 16], [600, 700], 500) == 8  # bad from the start
    assert crossing([8, 16], [100, 200], 500) == 16  # never bad
    assert crossing([8, 16], [99.9, 97.0], 99.0, lower_is_better=False) == pytest.approx(8 + 0.9 / 2.9 * 8)
    assert math.isnan(crossing([8], [math.nan], 1.0))


def test_the_answer_inverts_the_probes_intervals():
    s, _ = search_with(lambda lv: lv <= 16, 4, 64)
    # TTFT p99 against its limit 500 ms: about 60 ms up to 16 users, 600 ms and more beyond
    figures = {lv: {"ttft_p99": (60.0, 55.0, 70.0) if lv <= 16 else (600.0 + 10 * (lv - 17), 550.0, 900.0)}
               for lv in (4, 8, 16, 17, 18, 20, 24, 32)}
    a = answer(s, figures, {"ttft_p99": 500.0}, None)
    assert a["status"] == "found" and a["max_level"] == 16 and a["binding"] == "ttft_p99"
    # the estimates cross 500 ms at 16.8, the pessimistic bounds at 16.5, the optimistic ones at 16.9
    assert (a["estimate"], a["ci_low"], a["ci_high"]) == (16, 16, 16)
    # a second SLO that binds earlier sets the answer: attainment falls below 99 % between 8 and 16
    figures = {lv: {**f, "slo_attainment": (100.0, 99.5, 100.0) if lv <= 8 else (95.0, 93.0, 97.0)}
               for lv, f in figures.items()}
    b = answer(s, figures, {"ttft_p99": 500.0}, 0.99)
    assert b["binding"] == "slo_attainment" and b["estimate"] == 9 and b["ci_low"] <= 9 <= b["ci_high"]
    assert [p["level"] for p in a["probes"]] == [4, 8, 16, 32, 24, 20, 18, 17]
