"""The two ends of a distributed test: a worker's agent and the master's ledger of its workers.

* :class:`WorkerAgent`, on a worker: ships finished rows, self-check samples and the worker's counts to the
  master (:class:`~tokenswarm.loadgen.messages.Records`, every second, as soon as :data:`SHIP_MAX` wait, and
  at the stop), asks for request grants (:class:`~tokenswarm.loadgen.messages.Lease`) and says when it has
  drained.
* :class:`WorkerLedger`, on the master: per worker, the requests granted, started and recorded, whether it
  drained, and when it was lost with how many requests in flight. It answers leases; the master's load
  (:class:`tokenswarm.loadgen.load.ClusterLoad`) asks it whether the workers have drained and what was lost.

The messages and their schema: :mod:`tokenswarm.loadgen.messages`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent

from tokenswarm.loadgen import messages, workarounds
from tokenswarm.loadgen.messages import Drain, Drained, Grant, Lease, Records

log = logging.getLogger("tokenswarm")

SHIP_S = 1.0  # a worker ships its records at least this often
SHIP_MAX = 2000  # ... or as soon as this many are waiting


class WorkerAgent:
    """A worker's side of the protocol. Knows nothing of the users: ``counts()`` gives (requests started,
    requests in flight) for the heartbeat; the worker's role passes grants and drains on."""

    def __init__(self, runner: Any, worker: str, counts: Callable[[], tuple[int, int]]) -> None:
        self.runner = runner
        self.worker = worker
        self.counts = counts
        self.rows: list[list[str]] = []
        self.shipped = 0
        self.host = socket.gethostname()
        self.samples: list[list[Any]] = []
        self._greenlets = [gevent.spawn(self._ship_loop)]
        from tokenswarm.loadgen.selfcheck import SelfCheckSampler

        self._greenlets.append(SelfCheckSampler(worker, self.add_sample).greenlet)

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
        samples, self.samples = self.samples, []
        sent, in_flight = self.counts()
        messages.send(self.runner, Records(worker=self.worker, host=self.host, pid=os.getpid(), rows=rows,
                                           selfcheck=samples, sent=sent, in_flight=in_flight, final=final))
        self.shipped += len(rows)

    def add_sample(self, sample: Any) -> None:
        self.samples.append(list(sample.fields()))

    # -- request grants ---------------------------------------------------------------------
    def ask(self, n: int) -> None:
        """Ask the master to grant ``n`` requests (the budget's lease)."""
        messages.send(self.runner, Lease(worker=self.worker, n=n))

    # -- the end ----------------------------------------------------------------------------
    def drained(self) -> None:
        """Every request this worker started has finished and its record is shipped: say so. Locust's
        statistics go first (a worker reports them every few seconds), so the master's Locust CSVs count every
        request before it stops the test."""
        self.flush()
        workarounds.send_stats_now(self.runner)
        messages.send(self.runner, Drained(worker=self.worker))

    def close(self) -> None:
        """The test stopped here: stop shipping, send Locust's last statistics (after a web UI Stop a worker
        sends none), then the final records, which the master waits for before it writes."""
        for g in self._greenlets:
            g.kill(block=True)
        workarounds.send_stats_now(self.runner)
        self.flush(final=True)


class WorkerLedger:
    """The master's account of its workers in one test: who was granted, started, shipped what; who drained;
    who was lost with how many requests in flight. ``requests``: ``--requests`` to grant in all (0: no limit)."""

    def __init__(self, runner: Any, requests: int = 0) -> None:
        self.runner = runner
        self.workers: dict[str, dict[str, Any]] = {}  # by Locust client id
        self.lost: list[dict[str, Any]] = []
        self.remaining = requests  # requests not yet granted (--requests; 0: no limit)
        self.budget = requests
        self.draining = False
        self.drained: set[str] = set()
        for client_id in workarounds.worker_states(runner):
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

    def on_records(self, client_id: str, msg: Records) -> int:
        info = self._info(client_id, msg.worker)
        info.update(host=msg.host, pid=msg.pid, sent=msg.sent, in_flight=msg.in_flight, last_seen=time.time())
        info["records"] += len(msg.rows)
        if msg.final:
            info["final"] = True
        return len(msg.rows)

    def on_lease(self, client_id: str, msg: Lease) -> None:
        """Grant a worker's requests before it sends them: every one is in the ledger from now on."""
        n = max(msg.n, 0)
        grant = min(n, self.remaining) if self.budget else n
        if self.budget:
            self.remaining -= grant
        self._info(client_id, msg.worker)["leased"] += grant
        exhausted = bool(self.budget) and self.remaining == 0
        messages.send(self.runner, Grant(n=grant, exhausted=exhausted), client_id=client_id)

    def on_drained(self, client_id: str, msg: Drained) -> None:
        self._info(client_id, msg.worker)
        self.drained.add(client_id)

    def start_drain(self) -> None:
        if not self.draining:
            self.draining = True
            messages.send(self.runner, Drain())

    def alive(self) -> list[str]:
        return [cid for cid, state in workarounds.worker_states(self.runner).items() if state != workarounds.MISSING]

    def idle_since(self, since: float) -> bool:
        """Every live worker said it has no request in flight, in a report received at least one shipping
        interval (:data:`SHIP_S`) after epoch ``since`` (a report sent before the worker heard of a hold could
        still be followed by sends)."""
        for cid in self.alive():
            info = self._info(cid)
            if "last_seen" not in info and time.time() >= since + 2 * SHIP_S:
                continue  # never shipped, two intervals into the hold: it sends nothing (its test never started)
            if info.get("last_seen", 0.0) < since + SHIP_S or info["in_flight"] > 0:
                return False
        return True

    def all_drained(self) -> bool:
        return all(cid in self.drained for cid in self.alive())

    def budget_spent(self) -> bool:
        """``--requests``: every request was granted and has turned into a record (or was lost with a worker)."""
        if self.remaining > 0:
            return False
        alive = set(self.alive())
        return all(w["records"] >= w["leased"] for cid, w in self.workers.items() if cid in alive)

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
        for cid, state in workarounds.worker_states(self.runner).items():
            info = self._info(cid)
            if state == workarounds.MISSING and info["lost_at"] is None:
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
