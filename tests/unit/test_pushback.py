"""Waits after failures: Retry-After honoured and capped, backoff bounded, no spinning on errors."""

import random

import pytest

from tokenswarm.measure import RequestRecord
from tokenswarm.pushback import PUSHBACK_BASE_S, SPIN_BASE_S, Backoff


def rec(status="ok", http=200, retry_after=None):
    r = RequestRecord("r", 0.0, status=status, http_status=http)
    r.retry_after_s = retry_after
    return r


def test_retry_after_is_waited_and_capped():
    b = Backoff(cap_s=60.0)
    assert b.after(rec("http_error", 429, retry_after=2.0)) == 2.0
    assert b.after(rec("http_error", 503, retry_after=600.0)) == 60.0
    assert b.after(rec()) == 0.0 and b.failures == 0


def test_429_without_retry_after_backs_off_exponentially_with_jitter_and_a_cap():
    b = Backoff(cap_s=5.0, rng=random.Random(1))
    waits = [b.after(rec("http_error", 429)) for _ in range(8)]
    for i, w in enumerate(waits):
        full = min(PUSHBACK_BASE_S * 2 ** i, 5.0)
        assert full / 2 <= w <= full
    assert max(waits) <= 5.0


def test_other_failures_cost_nothing_once_then_back_off_so_a_user_never_spins():
    b = Backoff(cap_s=1.0, rng=random.Random(2))
    assert b.after(rec("connect_error", None)) == 0.0  # a single failure among successes costs nothing
    waits = [b.after(rec("connect_error", None)) for _ in range(10)]
    assert SPIN_BASE_S / 2 <= waits[0] <= SPIN_BASE_S
    assert all(w > 0 for w in waits) and max(waits) <= 1.0
    # a thousand failures in a row take at least (about) cap/2 each once the backoff reached the cap
    assert sum(b.after(rec("http_error", 500)) for _ in range(1000)) >= 400


@pytest.mark.parametrize("status", ["ok", "cancelled"])
def test_success_or_cancel_ends_the_run_of_failures(status):
    b = Backoff()
    b.after(rec("http_error", 500))
    b.after(rec("http_error", 500))
    assert b.after(rec(status)) == 0.0
    assert b.after(rec("http_error", 500)) == 0.0


def test_turned_off_429_is_an_ordinary_failure():
    b = Backoff(honour=False, cap_s=60.0)
    assert b.after(rec("http_error", 429, retry_after=30.0)) == 0.0
    assert 0 < b.after(rec("http_error", 429, retry_after=30.0)) <= SPIN_BASE_S


def test_cap_zero_never_waits():
    b = Backoff(cap_s=0.0)
    assert b.after(rec("http_error", 429, retry_after=3.0)) == 0.0
    assert all(b.after(rec("timeout", None)) == 0.0 for _ in range(5))
