"""Request budgets: a worker sends nothing the master has not granted; users share one lease at a time."""

import gevent
import pytest

from tokenswarm.loadgen.budget import LeasedBudget, LocalBudget


def test_local_budget_counts_down_and_takes_back_unused_tickets():
    b = LocalBudget(2)
    assert b.acquire() and b.acquire()
    assert not b.acquire() and b.exhausted
    b.release()
    assert not b.exhausted and b.acquire()
    unlimited = LocalBudget(None)
    assert all(unlimited.acquire() for _ in range(1000)) and not unlimited.exhausted


class Master:
    """Grants leases after a delay, from a budget (0: no limit); counts what it granted."""

    def __init__(self, budget=0, delay=0.01):
        self.remaining = budget
        self.budget = budget
        self.delay = delay
        self.asks = []
        self.granted = 0
        self.worker = None

    def ask(self, n):
        self.asks.append(n)
        gevent.spawn_later(self.delay, self._grant, n)

    def _grant(self, n):
        g = min(n, self.remaining) if self.budget else n
        if self.budget:
            self.remaining -= g
        self.granted += g
        self.worker.on_grant(g, bool(self.budget) and self.remaining == 0)


def worker(master):
    b = LeasedBudget(master.ask)
    master.worker = b
    return b


def test_users_waiting_together_share_one_outstanding_lease():
    m = Master(delay=0.5)  # long enough for all 50 to be waiting on a busy machine
    b = worker(m)
    got = []
    users = [gevent.spawn(lambda: got.append(b.acquire())) for _ in range(50)]
    gevent.joinall(users, timeout=5)
    assert got == [True] * 50
    # the first user asks alone; the 49 that came while it was out share the next lease
    assert m.asks == [1, 49]
    assert m.granted == b.granted == 50 and b.tickets == 0


def test_the_master_grants_no_more_than_its_budget():
    m = Master(budget=7)
    b = worker(m)
    got = []
    gevent.joinall([gevent.spawn(lambda: got.append(b.acquire())) for _ in range(20)], timeout=5)
    assert got.count(True) == 7 and got.count(False) == 13
    assert b.exhausted and m.granted == 7


def test_closing_releases_users_waiting_for_a_grant():
    m = Master(delay=10.0)  # the master never answers in time
    b = worker(m)
    got = []
    users = [gevent.spawn(lambda: got.append(b.acquire())) for _ in range(3)]
    gevent.sleep(0.05)
    b.close()
    gevent.joinall(users, timeout=2)
    assert got == [False] * 3


def test_an_unanswered_lease_is_asked_again(monkeypatch):
    monkeypatch.setattr("tokenswarm.loadgen.budget.LEASE_RETRY_S", 0.05)
    answers = []

    def ask(n):
        answers.append(n)
        if len(answers) == 2:  # the first lease is lost; the second is answered
            gevent.spawn_later(0.01, b.on_grant, n)

    b = LeasedBudget(ask)
    assert gevent.spawn(b.acquire).get(timeout=2) is True
    assert answers == [1, 1]


@pytest.mark.parametrize("n", [1, 3])
def test_a_released_ticket_serves_the_next_user_without_asking(n):
    m = Master()
    b = worker(m)
    assert gevent.spawn(b.acquire).get(timeout=2)
    for _ in range(n):
        b.release()
    asks = len(m.asks)
    assert all(gevent.spawn(b.acquire).get(timeout=2) for _ in range(n))
    assert len(m.asks) == asks
