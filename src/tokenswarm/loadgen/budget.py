"""Request budgets: may a user send one more request now?

A :class:`~tokenswarm.loadgen.swarm.Swarm` asks its budget before every
request it sends, and there are two kinds:

* :class:`LocalBudget`, in a single process: ``--requests N`` tickets, or no
  limit. The process writes its own run folder, so nothing more is needed.
* :class:`LeasedBudget`, on a worker: every request is granted by the master
  *before* it is sent (``tokenswarm_lease`` -> ``tokenswarm_grant``). The master
  thus counts every request a worker starts before the server can see it, and
  a worker killed at any moment (SIGKILL, an OOM-killed pod, a lost node) loses
  none from the master's ledger: requests granted to it minus its records that reached
  the master are the requests lost with it. Users that want to send at the
  same time share one lease message; at most one lease is outstanding, so a
  worker asks about once per round trip to the master however many users it
  runs. With ``--requests N`` the master grants no more than N in all.

Uses gevent events for waiting; no Locust import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gevent.event import Event

LEASE_RETRY_S = 5.0  # a lease unanswered this long is asked again (a message dropped around a test start)


class Budget(Protocol):
    """The interface a swarm asks before every request: the two kinds below implement it."""

    exhausted: bool  # no more requests will be granted

    def acquire(self) -> bool:
        """Take one request ticket (waiting for it if need be); False: no more requests."""
        ...

    def release(self) -> None:
        """Give back a ticket taken but not used."""
        ...

    def close(self) -> None:
        """The test is ending: callers waiting in :meth:`acquire` give up."""
        ...


class LocalBudget:
    """A single process's budget: ``limit`` requests (None: no limit)."""

    def __init__(self, limit: int | None = None) -> None:
        self.left = limit
        self.exhausted = False

    def acquire(self) -> bool:
        """Take one request ticket; False once the budget is spent."""
        if self.left is None:
            return True
        if self.left > 0:
            self.left -= 1
            return True
        self.exhausted = True
        return False

    def release(self) -> None:
        """Give back a ticket that was not used (the user stopped before sending)."""
        if self.left is not None:
            self.left += 1
            self.exhausted = False

    def close(self) -> None:
        pass


class LeasedBudget:
    """A worker's budget: each request is granted by the master before it is sent (see the module docstring).

    ``ask(n)`` sends the master a lease for ``n`` tickets; the master answers through :meth:`on_grant`.
    """

    def __init__(self, ask: Callable[[int], None]) -> None:
        self._ask = ask
        self.tickets = 0  # granted, not yet taken
        self.exhausted = False  # the master has no more to grant (--requests spent)
        self.granted = 0  # every ticket the master granted this worker
        self._waiting = 0  # users waiting for a ticket
        self._outstanding = False  # a lease is on its way
        self._grant = Event()
        self._closed = False

    def acquire(self) -> bool:
        """Wait for the master to grant one request; False once the master has none left or the budget is
        closed (the test is ending)."""
        self._waiting += 1
        try:
            while True:
                if self.tickets > 0:
                    self.tickets -= 1
                    return True
                if self.exhausted or self._closed:
                    return False
                if not self._outstanding:
                    self._outstanding = True
                    self._grant = Event()
                    self._ask(self._waiting)
                grant = self._grant
                if not grant.wait(LEASE_RETRY_S) and grant is self._grant:
                    self._outstanding = False  # unanswered: ask again
        finally:
            self._waiting -= 1

    def on_grant(self, n: int, exhausted: bool = False) -> None:
        """The master granted ``n`` tickets (``exhausted``: it has no more)."""
        self.tickets += n
        self.granted += n
        self.exhausted = self.exhausted or exhausted
        self._outstanding = False
        self._grant.set()

    def release(self) -> None:
        """A granted ticket that was not used stays for the next user."""
        self.tickets += 1

    def close(self) -> None:
        """The test is ending: users waiting for a grant give up."""
        self._closed = True
        self._grant.set()
