"""The saturation rule (the knee) and the highest level meeting the SLOs, on hand-made level tables."""

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report.saturation import find_knee, flagged, max_level_meeting_slo


def table(levels, throughput, ttft_p99, **extra):
    return pd.DataFrame({"level": levels, "output_throughput_tok_s": throughput, "ttft_p99_ms": ttft_p99, **extra})


def test_rises_then_flattens_names_the_last_level_before_the_flat_part():
    lv = table([1, 2, 4, 8, 16, 32, 64], [100, 200, 400, 750, 800, 810, 805], [50, 51, 53, 60, 120, 400, 900])
    knee = find_knee(lv)
    assert knee.level == 8  # beyond 8, at most +8 % output while TTFT p99 grows 15x
    assert knee.output_throughput_tok_s == 750 and knee.later_gain_pct == pytest.approx(8.0)
    assert knee.ttft_p99_ms == 60 and knee.later_ttft_rise_pct == pytest.approx(1400.0)
    # a stricter threshold moves the knee later: 750 -> 800 is +6.7 %, under 5 % only from 16 on
    assert find_knee(lv, knee_pct=5).level == 16


def test_monotone_growth_has_no_knee():
    lv = table([1, 2, 4, 8, 16], [100, 190, 350, 600, 900], [50, 52, 55, 60, 70])
    knee = find_knee(lv)
    assert knee.level is None and "still grows" in knee.reason


def test_a_noisy_dip_in_a_rising_curve_is_not_the_knee():
    lv = table([1, 2, 4, 8, 16, 32, 64, 128], [100, 198, 205, 390, 760, 790, 770, 800],
               [50, 55, 52, 58, 62, 150, 400, 900])
    assert find_knee(lv).level == 16  # 2 -> 4 gains 3.5 %, but 8 later gains 90 %: noise, not the knee


def test_ttft_noise_right_after_the_knee_does_not_move_it():
    lv = table([1, 2, 4, 8], [100, 200, 210, 205], [50, 60, 58, 300])  # p99 dips at 4, then explodes
    assert find_knee(lv).level == 2


def test_flat_throughput_with_flat_ttft_is_not_saturation_of_the_server():
    knee = find_knee(table([1, 2, 4, 8], [100, 200, 205, 204], [50, 50, 51, 50]))
    assert knee.level is None and "does not rise" in knee.reason


def test_short_and_unusable_sweeps():
    assert find_knee(table([8], [500], [60])).level is None
    assert "at least 2" in find_knee(table([8], [500], [60])).reason
    assert find_knee(pd.DataFrame()).level is None
    # levels without throughput (all failed) or without TTFT are left out, not read as a collapse
    lv = table([1, 2, 4, 8], [100, 0, 400, 410], [50, np.nan, 60, 500])
    assert find_knee(lv).level == 4
    # out of order input is sorted by level
    assert find_knee(table([8, 1, 4, 2], [410, 100, 400, 200], [500, 50, 60, 55])).level == 4


def test_highest_level_meeting_slo_and_flags_read_back_from_csv_strings():
    lv = pd.DataFrame({"level": [1, 2, 4, 8], "meets_slo": [True, True, False, True],
                       "under_target": ["False", "False", "True", "true"]})
    assert max_level_meeting_slo(lv) == 8  # the highest, even past a failing level
    assert max_level_meeting_slo(lv.assign(meets_slo=[None] * 4)) is None
    assert max_level_meeting_slo(lv.drop(columns="meets_slo")) is None
    assert flagged(lv, "under_target") == [4.0, 8.0] and flagged(lv, "late") == []


def test_knee_to_dict_is_json_ready():
    d = find_knee(table([1, 2, 4], [100, 200, 205], [0, 60, 300])).to_dict()
    assert d["level"] == 2 and d["later_ttft_rise_pct"] is not None
    d0 = find_knee(table([1, 2, 4], [100, 102, 101], [0, 60, 300])).to_dict()
    assert d0["level"] == 1 and d0["later_ttft_rise_pct"] is None  # from a TTFT p99 of 0: infinite rise


def test_a_sweep_stopped_early_says_so_rather_than_saturation_beyond_it():
    # Ctrl-C at level 16 of 1..64: still growing there says nothing about the levels not run
    lv = table([1, 2, 4, 8, 16], [100, 190, 350, 600, 900], [50, 52, 55, 60, 70])
    knee = find_knee(lv, not_run=[32, 64])
    assert knee.level is None and "beyond this sweep" not in knee.reason
    assert knee.reason == "not reached before the sweep stopped at level 16; planned but not run: 32, 64"
    # a knee found before the stop stands
    assert find_knee(table([1, 2, 4, 8], [100, 200, 400, 410], [50, 51, 53, 200]), not_run=[16]).level == 4


def test_a_sweep_stopped_in_its_last_level_says_so_too():
    # Ctrl-C in the last planned level (16), whose window held no finished request: every level was reached
    lv = table([4, 8, 16], [100, 190, float("nan")], [50, 52, float("nan")])
    knee = find_knee(lv, stopped=True)
    assert knee.reason == "not reached before the sweep stopped at level 16"
    assert "beyond this sweep" in find_knee(lv).reason  # a complete sweep's words
