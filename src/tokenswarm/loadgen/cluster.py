"""Master <-> worker protocol: records, levels, request leases, drain, worker loss.

All of it rides on Locust's custom messages (``runner.send_message`` and
``register_message``); nothing else connects the processes. Messages:

* ``tokenswarm_records`` worker -> master, every second and at stop:
  ``{"worker", "host", "pid", "rows", "health", "sent", "in_flight"}``. Also a
  heartbeat of the worker's books (sent, in flight), so a lost worker's
  in-flight requests can be counted, and its self-check samples (CPU, loop lag).
* ``tokenswarm_level`` master -> workers: ``{"level", "workers"}``: the
  level new requests are stamped with; in rate mode each worker sends
  ``level / workers`` requests per second.
* ``tokenswarm_lease`` / ``tokenswarm_grant``: ``{"worker", "n"}`` /
  ``{"n", "exhausted"}``. A worker sends no request the master has not granted
  (:class:`~tokenswarm.loadgen.budget.LeasedBudget`): the master knows every
  request a worker started before the server does, so one killed at any moment
  is accounted for exactly (granted = records + requests lost with it); with
  ``--requests N`` the master grants N in all.
* ``tokenswarm_drain`` / ``tokenswarm_drained``: the test is ending; workers
  send no new requests and report once their requests in flight are done.
* ``tokenswarm_abort``: the master was interrupted; the stop that follows
  cancels requests in flight (recorded as ``cancelled``) instead of waiting.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent

from tokenswarm.loadgen import workarounds

if TYPE_CHECKING:
    from locust.env import Environment

log = logging.getLogger("tokenswarm")

MSG_RECORDS = "tokenswarm_records"
MSG_LEVEL = "tokenswarm_level"
MSG_LEASE = "tokenswarm_lease"
MSG_GRANT = "tokenswarm_grant"
MSG_DRAIN = "tokenswarm_drain"
MSG_DRAINED = "tokenswarm_drained"
MSG_ABORT = "tokenswarm_abort"  # master -> workers: interrupted, cancel requests in flight at the stop

SHIP_S = 1.0  # a worker ships its records at least this often
SHIP_MAX = 2000  # ... or as soon as this many are waiting


class WorkerAgent:
    """A worker's side of the protocol: ships its records, its books and its self-check samples to the master,
    asks it for request grants. Knows nothing of the session: ``books()`` gives (requests started, requests
    in flight) for the heartbeat; the worker's role owns both and passes grants and drains on."""

    def __init__(self, runner: Any, worker: str, books: Callable[[], tuple[int, int]]) -> None:
        self.runner = runner
        self.worker = worker
        self.books = books
        self.rows: list[list[str]] = []
        self.shipped = 0
        self.host = socket.gethostname()
        self.health: list[list[Any]] = []
        self._greenlets = [gevent.spawn(self._ship_loop)]
        from tokenswarm.loadgen.selfcheck import HealthSampler

        self._greenlets.append(HealthSampler(worker, self.add_health).greenlet)

    # -- records ---------------------------------------------------------------------------
    def add(self, rows: list[list[str]]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= SHIP_MAX:
            self.flush()

    def _ship_loop(self) -> None:
        while True:
            gevent.sleep(SHIP_S)
            self.flush(heartbeat=True)

    def flush(self, heartbeat: bool = False, final: bool = False) -> None:
        if not self.rows and not heartbeat and not final:
            return
        rows, self.rows = self.rows, []
        samples, self.health = self.health, []
        sent, in_flight = self.books()
        self.runner.send_message(MSG_RECORDS, {
            "worker": self.worker, "host": self.host, "pid": os.getpid(), "rows": rows, "health": samples,
            "sent": sent, "in_flight": in_flight, "final": final,
        })
        self.shipped += len(rows)

    def add_health(self, sample: Any) -> None:
        self.health.append([sample.time, sample.worker, sample.cpu_pct, sample.loop_lag_p99_ms,
                            sample.loop_lag_max_ms])

    # -- request grants ---------------------------------------------------------------------
    def ask(self, n: int) -> None:
        """Ask the master to grant ``n`` requests (the budget's lease)."""
        self.runner.send_message(MSG_LEASE, {"worker": self.worker, "n": n})

    # -- the end ----------------------------------------------------------------------------
    def drained(self) -> None:
        """Every request this worker started has finished and its record is shipped: say so. Locust's
        statistics go first (a worker reports them every few seconds), so the master's Locust CSVs count every
        request before it stops the test."""
        self.flush()
        workarounds.send_stats_now(self.runner)
        self.runner.send_message(MSG_DRAINED, {"worker": self.worker})

    def close(self) -> None:
        """The test stopped here: stop shipping, send Locust's last statistics (after a web UI Stop a worker
        sends none), then the final records, which the master waits for before it writes."""
        for g in self._greenlets:
            g.kill(block=True)
        workarounds.send_stats_now(self.runner)
        self.flush(final=True)


class MasterBooks:
    """The master's view of its workers: who shipped what, leases, drain, and who was lost."""

    def __init__(self, environment: Environment, requests: int = 0) -> None:
        self.env = environment
        self.runner = environment.runner
        self.workers: dict[str, dict[str, Any]] = {}  # by Locust client id
        self.lost: list[dict[str, Any]] = []
        self.remaining = requests  # requests not yet granted (--requests; 0: no limit)
        self.budget = requests
        self.draining = False
        self.drained: set[str] = set()
        for client_id in list(self.runner.clients.keys()):
            self._info(client_id)

    def _info(self, client_id: str, label: str | None = None) -> dict[str, Any]:
        info = self.workers.get(client_id)
        if info is None:
            index = workarounds.worker_index(self.runner, client_id)
            info = self.workers[client_id] = {
                "id": label or (f"w{index}" if index is not None else client_id), "client_id": client_id,
                "host": None, "pid": None, "records": 0, "sent": 0, "in_flight": 0, "leased": 0,
                "lost_at": None,
            }
        elif label:
            info["id"] = label
        return info

    def on_records(self, client_id: str, data: dict[str, Any]) -> int:
        info = self._info(client_id, data.get("worker"))
        info.update(host=data.get("host"), pid=data.get("pid"), sent=data.get("sent", info["sent"]),
                    in_flight=data.get("in_flight", 0), last_seen=time.time())
        info["records"] += len(data["rows"])
        if data.get("final"):
            info["final"] = True
        return len(data["rows"])

    def on_lease(self, client_id: str, data: dict[str, Any]) -> None:
        """Grant a worker's requests before it sends them: every one is in the books from now on."""
        n = max(int(data.get("n", 1)), 0)
        grant = min(n, self.remaining) if self.budget else n
        if self.budget:
            self.remaining -= grant
        self._info(client_id, data.get("worker"))["leased"] += grant
        exhausted = bool(self.budget) and self.remaining == 0
        self.runner.send_message(MSG_GRANT, {"n": grant, "exhausted": exhausted}, client_id=client_id)

    def on_drained(self, client_id: str, data: dict[str, Any]) -> None:
        self._info(client_id, data.get("worker"))
        self.drained.add(client_id)

    def start_drain(self) -> None:
        if not self.draining:
            self.draining = True
            self.runner.send_message(MSG_DRAIN, {})

    def alive(self) -> list[str]:
        return [cid for cid, node in self.runner.clients.items() if node.state != "missing"]

    def all_drained(self) -> bool:
        return all(cid in self.drained for cid in self.alive())

    def awaiting_records(self) -> list[str]:
        """Live workers whose last records may still be on their way: neither drained (every request
        finished and shipped) nor stopped with their final batch sent."""
        return [cid for cid in self.alive() if cid not in self.drained and not self._info(cid).get("final")]

    def wait_records(self, timeout: float) -> list[str]:
        """Wait (up to ``timeout`` s) for :meth:`awaiting_records` to empty; returns those still awaited.
        Called by the master when a test stops: Locust's stop returns once the workers report no users,
        which can come before their last records (the requests cancelled at the stop)."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = self.awaiting_records()
            if not waiting or time.monotonic() >= deadline:
                break
            gevent.sleep(0.05)
        for cid in waiting:
            info = self._info(cid)
            info["unshipped"] = max(info["sent"] - info["records"], 0)
            log.warning("tokenswarm: worker %s sent no final records within %gs of the stop; %d requests it "
                        "started are not in requests.csv", info["id"], timeout, info["unshipped"])
        return waiting

    def check_lost(self) -> list[dict[str, Any]]:
        """Workers Locust now marks missing (no heartbeat): recorded once each, with what they had in flight."""
        new = []
        for cid, node in list(self.runner.clients.items()):
            info = self._info(cid)
            if node.state == "missing" and info["lost_at"] is None:
                info["lost_at"] = time.time()
                # requests it started (each granted here before it was sent) with no record shipped: in flight
                # when it died, or finished and not yet shipped
                info["lost_in_flight"] = max(max(info["leased"], info["sent"]) - info["records"], 0)
                self.lost.append(info)
                new.append(info)
                log.warning("tokenswarm: worker %s lost (no heartbeat); %d records kept, %d requests in flight "
                            "counted as lost", info["id"], info["records"], info["lost_in_flight"])
        return new

    @property
    def lost_in_flight(self) -> int:
        return sum(w.get("lost_in_flight", 0) for w in self.lost)

    def public(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in w.items() if k != "last_seen"} for w in self.workers.values()]
