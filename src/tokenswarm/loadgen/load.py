"""The load being driven, as the run controller sees it: one interface, one implementation per role.

The run controller (:mod:`tokenswarm.loadgen.controller`) keeps the level clock and decides when a test
stops sending and when it stops; it asks the load what only the load knows, through :class:`Load`:

* :class:`LocalLoad`: the users of this very process (a :class:`~tokenswarm.loadgen.swarm.Swarm`);
* :class:`ClusterLoad`: a master's workers, through typed messages (:mod:`tokenswarm.loadgen.messages`) and
  the master's :class:`~tokenswarm.loadgen.cluster.WorkerLedger`.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Protocol

from tokenswarm.loadgen import messages, workarounds
from tokenswarm.loadgen.cluster import WorkerLedger
from tokenswarm.loadgen.messages import Abort, Level
from tokenswarm.loadgen.swarm import Swarm

FINAL_RECORDS_WAIT_S = 10.0  # how long a stopping master waits for each worker's last records


class Load(Protocol):
    """What the run controller asks of the load it drives (every method returns at once)."""

    def announce(self, level: float, start: float) -> None:
        """New requests belong to ``level``, which began at epoch ``start``."""
        ...

    def poll(self) -> None:
        """Called every watcher tick: notice lost or new workers (and tell the others the level again)."""
        ...

    def stop_sending(self) -> None:
        """The test is ending: no new requests; those in flight finish."""
        ...

    def drained(self) -> bool:
        """Every request started has finished (and, on a master, its record has arrived)."""
        ...

    def budget_spent(self) -> bool:
        """``--requests``: every request was handed out and has turned into a record (or was lost)."""
        ...

    def sent(self) -> int:
        """Requests sent so far (a master: as its workers last said, up to a heartbeat old)."""
        ...

    def idle(self, since: float) -> bool:
        """No request is in flight, as known after epoch ``since`` (a master: as every live worker said in a
        report it sent at least one shipping interval after ``since``, so after it heard of a hold)."""
        ...

    def abort(self) -> None:
        """The run was interrupted: the coming stop cancels requests in flight."""
        ...

    def await_final_records(self) -> None:
        """Wait for the last records still on their way (a master's workers'); not from a runner greenlet."""
        ...

    def close(self) -> None:
        """The test stopped: stop the load's own greenlets and report what is queued."""
        ...

    @property
    def lost_in_flight(self) -> int:
        """Requests lost with workers that were lost (they count as failed)."""
        ...

    def workers(self, records: int) -> list[dict[str, Any]]:
        """run.json's ``workers`` (``records``: rows written so far)."""
        ...

    def lost_workers(self) -> list[dict[str, Any]]:
        """run.json's ``lost_workers``."""
        ...


class LocalLoad:
    """The users of this process: its :class:`Swarm`."""

    lost_in_flight = 0

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm

    def announce(self, level: float, start: float) -> None:
        self.swarm.set_level(level, 1, start)

    def poll(self) -> None:
        pass

    def stop_sending(self) -> None:
        self.swarm.stop_sending()

    def drained(self) -> bool:
        return self.swarm.in_flight == 0

    def budget_spent(self) -> bool:
        return self.swarm.exhausted and self.swarm.in_flight == 0

    def sent(self) -> int:
        return self.swarm.started

    def idle(self, since: float) -> bool:
        return self.swarm.in_flight == 0

    def abort(self) -> None:
        pass

    def await_final_records(self) -> None:
        pass

    def close(self) -> None:
        self.swarm.close()

    def workers(self, records: int) -> list[dict[str, Any]]:
        return [{"id": "local", "host": socket.gethostname(), "pid": os.getpid(), "records": records,
                 "sent": self.swarm.started}]

    def lost_workers(self) -> list[dict[str, Any]]:
        return []


class ClusterLoad:
    """A master's workers: levels, drain and abort go to them as messages; the ledger answers the rest."""

    def __init__(self, runner: Any, ledger: WorkerLedger) -> None:
        self.runner = runner
        self.ledger = ledger
        self._level: tuple[float, float] | None = None
        self._told = 0  # workers alive when the level was last told

    def announce(self, level: float, start: float) -> None:
        self._level = (level, start)
        workers = max(len(self.ledger.alive()), 1)
        self._told = workers
        messages.send(self.runner, Level(level=level, workers=workers, start=start))

    def poll(self) -> None:
        lost = self.ledger.check_lost()
        if self._level is not None and (lost or len(self.ledger.alive()) != self._told):
            self.announce(*self._level)  # rate mode: the others take over a lost worker's share

    def stop_sending(self) -> None:
        self.ledger.start_drain()

    def drained(self) -> bool:
        return self.ledger.all_drained()

    def budget_spent(self) -> bool:
        return self.ledger.budget_spent()

    def sent(self) -> int:
        return sum(w["sent"] for w in self.ledger.workers.values())

    def idle(self, since: float) -> bool:
        return self.ledger.idle_since(since)

    def abort(self) -> None:
        messages.send(self.runner, Abort())

    def await_final_records(self) -> None:
        """The workers' last records (requests cancelled at the stop) before anything is written. Not from one
        of the runner's own greenlets, which receive those records."""
        if workarounds.in_runner_greenlet(self.runner):
            return
        self.ledger.wait_records(FINAL_RECORDS_WAIT_S)

    def close(self) -> None:
        self.ledger.check_lost()

    @property
    def lost_in_flight(self) -> int:
        return self.ledger.lost_in_flight

    def workers(self, records: int) -> list[dict[str, Any]]:
        return self.ledger.public()

    def lost_workers(self) -> list[dict[str, Any]]:
        return [{"id": w["id"], "lost_at": w["lost_at"], "records": w["records"],
                 "lost_in_flight": w.get("lost_in_flight", 0)} for w in self.ledger.lost]
