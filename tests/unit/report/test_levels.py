"""Per-level statistics (tokenswarm.report.levels): lockstep, SLO targets on a level's figures and the verdicts
with intervals."""

import numpy as np
import pandas as pd

from tokenswarm.report.intervals import Interval
from tokenswarm.report.levels import (
    FAILS,
    HOLDS,
    UNDECIDED,
    judge,
    level_stats,
    lockstep_threshold,
    send_dispersion,
)
from tokenswarm.report.synthetic import stochastic_level


def test_sends_in_waves_are_lockstep_and_spread_sends_are_not():
    lifetime, users, rng = 0.4, 32, np.random.default_rng(3)
    waves = np.concatenate([np.full(users, k * lifetime) + rng.normal(0, 0.005, users) for k in range(50)])
    spread = np.concatenate([k * lifetime + rng.uniform(0, lifetime, users) for k in range(50)])
    assert send_dispersion(waves, 0.0, 20.0, lifetime) > 20  # about 3/4 of the users
    assert send_dispersion(spread, 0.0, 20.0, lifetime) < 2
    assert lockstep_threshold(4) == 3 and lockstep_threshold(16) == 8 and lockstep_threshold(256) == 10
    assert np.isnan(send_dispersion(spread, 0.0, 0.5, lifetime))  # fewer than 8 bins: no verdict


def test_judge_tells_holds_fails_and_undecided_from_the_intervals():
    t = {"ttft_p99": 500.0}
    assert judge({"ttft_p99": Interval(400, 380, 450)}, t, None) == HOLDS
    assert judge({"ttft_p99": Interval(600, 520, 700)}, t, None) == FAILS
    assert judge({"ttft_p99": Interval(480, 430, 530)}, t, None) == UNDECIDED
    assert judge({"ttft_p99": Interval(400, 380, np.nan)}, t, None) == UNDECIDED  # unknown bound: no decision
    assert judge({"ttft_p99": Interval(400, 380, 450)}, t, None, failed=1) == FAILS
    att = {"slo_attainment": Interval(99.5, 99.2, 99.8)}
    assert judge(att, {}, 0.99) == HOLDS and judge({"slo_attainment": Interval(97, 96, 98)}, {}, 0.99) == FAILS


def test_a_levels_percentile_slo_judges_the_level_and_sets_its_verdict():
    df, w = stochastic_level(7, sigma_state=0.0, seconds=60.0)
    row = level_stats(df, [w], slo={"tpot_p50": 20.0}).iloc[0]  # the median TPOT is 10 ms
    assert row["meets_slo"] and row["slo_verdict"] == HOLDS and np.isnan(row["goodput_req_s"])
    row = level_stats(df, [w], slo={"tpot_p50": 5.0, "ttft": 10_000.0}).iloc[0]
    assert not row["meets_slo"] and row["slo_verdict"] == FAILS
    assert row["slo_attainment_ci_low_pct"] <= 100.0
    plain = level_stats(pd.DataFrame(df), [w]).iloc[0]
    assert plain["slo_verdict"] is None and not plain["lockstep"]  # open loop: never lockstep


def _requests(n, tpot_ms, events, tokens=60, **cols):
    """n ok requests of one level, one a second, with the given TPOT (ms or NaN), output events and tokens."""
    t0 = 1_790_000_000.0
    start = t0 + np.arange(n, dtype=float)
    itl = " ".join(["20.000"] * (events - 1)) if events > 1 else ""
    df = pd.DataFrame({"start_time": start, "level": 2.0, "status": "ok", "http_status": 200.0,
                       "ttft_ms": 3000.0, "tpot_ms": tpot_ms, "e2e_ms": 3000.0 + 20.0 * max(events - 1, 0),
                       "close_ms": 3100.0, "input_tokens": 18.0, "output_tokens": float(tokens),
                       "output_events": float(events), "itl_ms": itl, "token_check": "", "lingered": np.nan})
    for k, v in cols.items():
        df[k] = v
    from tokenswarm.report.levels import Window

    return df, Window(2.0, t0, t0 + n + 5, t0)


def test_a_request_without_tpot_neither_meets_nor_misses_a_tpot_slo():
    # "fake streaming": every answer in one event, no TPOT (field case 18)
    df, w = _requests(20, np.nan, 1)
    row = level_stats(df, [w], slo={"tpot": 50.0}).iloc[0]
    assert row["slo_unjudged"] == 20 and np.isnan(row["slo_attainment_pct"]) and row["goodput_req_s"] == 0
    assert not row["meets_slo"] and row["slo_verdict"] != HOLDS and np.isnan(row["tpot_mean_ms"])
    # beside judged requests, the unjudged ones are left out of the share: 10 of 10 judged meet it
    half, _ = _requests(10, 20.0, 60)
    both = pd.concat([df.iloc[:10], half.assign(start_time=half["start_time"] + 10)], ignore_index=True)
    row = level_stats(both, [w], slo={"tpot": 50.0}).iloc[0]
    assert row["slo_unjudged"] == 10 and row["slo_attainment_pct"] == 100.0
    # an ITL limit: a request with no gap is unjudged too
    row = level_stats(both, [w], slo={"itl": 50.0}).iloc[0]
    assert row["slo_unjudged"] == 10 and row["slo_attainment_pct"] == 100.0


def test_clumped_events_contradicted_usage_and_lingering_streams_flag_the_level():
    even, w = _requests(20, 20.0, 60)
    row = level_stats(even, [w]).iloc[0]
    assert not row["clumped"] and not row["usage_contradicted"] and not row["lingered"]
    assert row["lingered_pct"] == 0.0
    few, w = _requests(20, 20.0, 10)  # 10 events carried 60 tokens each: a buffering proxy
    assert level_stats(few, [w]).iloc[0]["clumped"]
    flagged, w = _requests(20, 20.0, 60, token_check=["reasoning_outside_completion"] * 3 + [""] * 17,
                           lingered=[1.0] * 5 + [np.nan] * 15)
    row = level_stats(flagged, [w]).iloc[0]
    assert row["token_contradictions"] == 3 and row["usage_contradicted"]
    assert row["lingered_pct"] == 25.0 and row["lingered"]


def test_clumped_by_its_itl_beside_its_tpot():
    from tokenswarm.report.levels import is_clumped

    assert is_clumped(1.0, 0.05, 20.0)  # gaps near 0 beside 20 ms a token: bursts
    assert not is_clumped(1.0, 19.0, 20.0)
    assert is_clumped(5.0, 19.0, 20.0)  # five tokens an event
    assert not is_clumped(1.5, 19.0, 20.0)
    assert not is_clumped(float("nan"), float("nan"), float("nan"))


def test_the_share_a_packet_capture_timed_is_the_levels_and_empty_for_a_run_timed_by_its_reads():
    df, w = stochastic_level(4, sigma_state=0.0, seconds=60.0)
    df = pd.DataFrame(df)
    assert np.isnan(level_stats(df, [w]).iloc[0]["timing_capture_pct"])  # no timing_source: an older run
    df["timing_source"] = "read"
    assert np.isnan(level_stats(df, [w]).iloc[0]["timing_capture_pct"])
    df["timing_source"] = np.where(np.arange(len(df)) % 4 == 0, "read", "capture")  # a quarter fell back
    got = level_stats(df, [w]).iloc[0]["timing_capture_pct"]
    assert 70.0 < got < 80.0
