"""Sweep plans, level/SLO parsing and open-loop arrival schedules."""

import random
import statistics

import pytest

from tokenswarm.arrivals import Arrivals
from tokenswarm.errors import SettingsError
from tokenswarm.sweep import CONCURRENCY, RATE, SweepPlan, level_str, parse_levels, parse_slo


def test_parse_levels():
    assert parse_levels("1,2,4, 8") == [1, 2, 4, 8]
    assert parse_levels("0.5,2", "--rates", integers=False) == [0.5, 2.0]
    assert level_str(0.5) == "0.5" and level_str(8) == "8" and level_str(8.0) == "8"


@pytest.mark.parametrize("text,msg", [
    ("", "give comma-separated numbers"),
    ("1,,4", "'' is not a number"),
    ("1,x", "'x' is not a number"),
    ("1,-2", "'-2' must be more than zero"),
    ("1,0", "'0' must be more than zero"),
    ("1.5", "must be a whole number of users"),
])
def test_bad_levels_name_the_item(text, msg):
    with pytest.raises(SettingsError, match="bad --levels") as e:
        parse_levels(text)
    assert msg in str(e.value)


def test_parse_slo():
    assert parse_slo("ttft=2000, tpot=100,e2e_ms=30000") == {"ttft": 2000.0, "tpot": 100.0, "e2e": 30000.0}
    assert parse_slo("") == {}
    for bad, msg in (("ttfb=1", "unknown key 'ttfb'; use ttft, tpot, itl, e2e"), ("ttft", "KEY=MS"),
                     ("ttft=fast", "'fast' is not a number"), ("ttft=0", "more than zero")):
        with pytest.raises(SettingsError, match="bad --slo") as e:
            parse_slo(bad)
        assert msg in str(e.value)


def test_plan_ends_levels_by_duration_or_requests():
    p = SweepPlan(CONCURRENCY, [1, 2, 4], level_duration_s=10.0, level_requests=50)
    assert p.users(2) == 4
    assert not p.level_done(0, 9.9, 49)
    assert p.level_done(0, 10.0, 0)
    assert p.level_done(0, 1.0, 50)
    only_requests = SweepPlan(CONCURRENCY, [1], level_requests=5)
    assert not only_requests.level_done(0, 1e9, 4) and only_requests.level_done(0, 0.0, 5)
    rate = SweepPlan(RATE, [0.5, 2.0], level_duration_s=5.0, max_concurrency=64)
    assert rate.users(0) == 64 == rate.users(1)
    with pytest.raises(SettingsError, match="--level-duration and/or --level-requests"):
        SweepPlan(CONCURRENCY, [1])


def test_poisson_arrivals_have_the_requested_rate():
    a = Arrivals(20.0, start=100.0, kind="poisson", rng=random.Random(3))
    times = [a.next() for _ in range(20001)]
    assert times[0] == 100.0
    gaps = [b - a_ for a_, b in zip(times, times[1:])]
    assert statistics.fmean(gaps) == pytest.approx(1 / 20.0, rel=0.03)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)  # exponential: CV 1


def test_gamma_burstiness_changes_the_spread_not_the_rate():
    def cv_and_mean(b):
        a = Arrivals(10.0, 0.0, kind="gamma", burstiness=b, rng=random.Random(5))
        gaps = [a.gap() for _ in range(20000)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps), statistics.fmean(gaps)

    bursty, m1 = cv_and_mean(0.25)
    regular, m2 = cv_and_mean(4.0)
    assert m1 == pytest.approx(0.1, rel=0.05) and m2 == pytest.approx(0.1, rel=0.05)
    assert bursty == pytest.approx(2.0, rel=0.1)  # CV of gamma = 1/sqrt(shape)
    assert regular == pytest.approx(0.5, rel=0.1)


def test_constant_arrivals_and_bad_arguments():
    a = Arrivals(4.0, 0.0, kind="constant")
    assert [a.next() for _ in range(3)] == [0.0, 0.25, 0.5]
    with pytest.raises(ValueError, match="unknown arrival kind"):
        Arrivals(1.0, 0.0, kind="weibull")
    with pytest.raises(ValueError, match="rate must be positive"):
        Arrivals(0.0, 0.0)
