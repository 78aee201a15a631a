"""The level timeline and the test's ending (tokenswarm.loadgen.timeline): plain objects, no Locust."""

import pytest

from tokenswarm.loadgen.timeline import DRAINED, DURATION, REQUESTS, TIMED_OUT, Ending, LevelTimeline


def test_a_new_level_closes_the_open_one_at_the_same_instant():
    t = LevelTimeline()
    assert t.current is None and t.level is None and not t.running
    t.begin(1, 100.0)
    t.begin(2, 130.0)
    assert t.segments == [{"level": 1, "start": 100.0, "end": 130.0}, {"level": 2, "start": 130.0, "end": None}]
    assert t.running and t.level == 2 and len(t) == 2


def test_closing_ends_the_open_level_once():
    t = LevelTimeline()
    assert not t.close(5.0)  # nothing open
    t.begin(4, 1.0)
    assert t.close(9.0)
    assert not t.close(12.0)  # the end stays where load stopped
    assert list(t) == [{"level": 4, "start": 1.0, "end": 9.0}] and not t.running


def test_the_duration_drains_once_then_in_flight_requests_finish():
    e = Ending(started=10.0, duration_s=30.0)
    assert e.should_drain(39.9, budget_spent=False) is None
    assert e.should_stop(39.9, in_flight_done=True, stop_timeout_s=5.0) is None  # not draining yet
    assert e.should_drain(40.0, budget_spent=False) == DURATION
    assert e.drain(40.0, DURATION) and not e.drain(41.0, REQUESTS)  # the first reason stays
    assert e.draining and e.why == DURATION
    assert e.should_drain(50.0, budget_spent=True) is None  # already draining
    assert e.should_stop(42.0, in_flight_done=False, stop_timeout_s=5.0) is None
    assert e.should_stop(42.0, in_flight_done=True, stop_timeout_s=5.0) == DRAINED
    assert e.should_stop(46.0, in_flight_done=False, stop_timeout_s=5.0) == TIMED_OUT
    assert e.should_stop(46.0, in_flight_done=False, stop_timeout_s=10.0) is None  # the web UI gave it longer


def test_requests_still_in_flight_after_the_stop_timeout_are_cut():
    e = Ending(started=0.0, duration_s=None)
    assert e.should_drain(1e9, budget_spent=False) is None  # no time limit: a shape or the user ends it
    assert e.should_drain(3.0, budget_spent=True) == REQUESTS
    e.drain(3.0, REQUESTS)
    assert e.should_stop(5.0, in_flight_done=False, stop_timeout_s=2.0) is None  # exactly the timeout: still waiting
    assert e.should_stop(5.01, in_flight_done=False, stop_timeout_s=2.0) == TIMED_OUT


@pytest.mark.parametrize("timeout", [0.0, 0.5])
def test_a_zero_stop_timeout_cuts_at_once(timeout):
    e = Ending(started=0.0, duration_s=1.0)
    e.drain(1.0, DURATION)
    assert e.should_stop(1.0 + timeout + 1e-6, in_flight_done=False, stop_timeout_s=timeout) == TIMED_OUT
