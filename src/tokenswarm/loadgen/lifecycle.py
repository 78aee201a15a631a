"""What a master and its workers say as they come and go: connections, joins, leaves, users.

Importing :mod:`tokenswarm.loadgen` registers these listeners. Locust logs
none of this at its default level, so a worker in a container looked dead
while it waited or worked. Now:

* a worker says it connected, to which master (host:port), and each change of
  the number of users it runs;
* a master says when a worker joins, quits, or goes missing (no heartbeat) and
  comes back, with how many are connected out of ``--expect-workers``.

One line each, on stderr beside Locust's own log (``docker compose logs``,
``kubectl logs``). Nothing here touches what is measured or written.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

WATCH_S = 0.25  # how often the master looks at its workers
USERS_WATCH_S = 1.0  # how often a worker looks at its user count


def say(line: str) -> None:
    print(f"tokenswarm: {line}", file=sys.stderr, flush=True)


def worker_label(runner: MasterRunner, client_id: str) -> str:
    """``w3`` (Locust's worker index), as requests.csv and run.json name the worker."""
    index = getattr(runner, "worker_indexes", {}).get(client_id)
    return f"w{index}" if index is not None else client_id


def worker_host(client_id: str) -> str:
    """The worker's host name: Locust's client ids are ``<hostname>_<uuid hex>``."""
    return client_id.rsplit("_", 1)[0] if "_" in client_id else client_id


class WorkerWatch:
    """On a master: compares the connected workers every :data:`WATCH_S` and says what changed."""

    def __init__(self, environment: Environment, runner: MasterRunner) -> None:
        self.runner = runner
        self.expected = getattr(environment.parsed_options, "expect_workers", None)
        self.states: dict[str, str] = {}  # client id -> state last seen
        self.labels: dict[str, str] = {}
        self.greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(WATCH_S)
            self.check()

    def _of(self) -> str:
        """Connected workers as of the changes said so far (several can join between two looks)."""
        n = sum(1 for state in self.states.values() if state != STATE_MISSING)
        return f"{n} of {self.expected} expected" if self.expected else str(n)

    def check(self) -> None:
        clients = {cid: node.state for cid, node in list(self.runner.clients.items())}
        for cid in [c for c in self.states if c not in clients]:
            if self.states.pop(cid) != STATE_MISSING:  # a missing one already had its line
                say(f"worker {self.labels.get(cid, cid)} left; {self._of()} connected")
        for cid, state in clients.items():
            before = self.states.get(cid)
            self.states[cid] = state
            label = self.labels.setdefault(cid, worker_label(self.runner, cid))
            if before is None:
                say(f"worker {label} joined from {worker_host(cid)}; {self._of()} connected")
            elif state == STATE_MISSING and before != STATE_MISSING:
                say(f"worker {label} is missing (no heartbeat); {self._of()} connected")
            elif before == STATE_MISSING and state != STATE_MISSING:
                say(f"worker {label} is back; {self._of()} connected")

    def stop(self) -> None:
        self.greenlet.kill(block=False)


class UserWatch:
    """On a worker: says how many users it runs whenever that number changes."""

    def __init__(self, runner: WorkerRunner, name: str) -> None:
        self.runner = runner
        self.name = name
        self.users = 0
        self.greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(USERS_WATCH_S)
            self.check()

    def check(self) -> None:
        users = int(self.runner.user_count)
        if users != self.users:
            self.users = users
            say(f"worker {self.name}: {users} user{'s' if users != 1 else ''}")

    def stop(self) -> None:
        self.greenlet.kill(block=False)


@events.init.add_listener
def _init(environment: Environment, **_kw: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # Locust's worker runner is made connected: its constructor waits for the master's answer
        name = f"w{runner.worker_index}" if runner.worker_index >= 0 else runner.client_id
        say(f"worker {name} connected to master {runner.master_host}:{runner.master_port} "
            f"(host {socket.gethostname()})")
        watch: Any = UserWatch(runner, name)
    elif isinstance(runner, MasterRunner):
        watch = WorkerWatch(environment, runner)
        quit_all = runner.quit

        def quit_and_watch_no_more() -> None:
            watch.stop()  # the master sends every worker away now: no "left" line for each
            quit_all()

        runner.quit = quit_and_watch_no_more  # type: ignore[method-assign]
    else:
        return
    environment.tokenswarm_lifecycle = watch

    def quitting(**_kw: Any) -> None:
        watch.stop()
        if isinstance(watch, UserWatch):
            say(f"worker {watch.name}: exiting")

    environment.events.quitting.add_listener(quitting)
