"""Sweep plans and level/SLO parsing (tokenswarm.sweep)."""

import pytest

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
    ("1,2,1", "'1' appears twice; each level runs once a sweep"),  # once broke the report (no report.md)
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
