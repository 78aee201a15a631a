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
