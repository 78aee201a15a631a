"""What a master and its workers say as they come and go: connections, joins, leaves, users.

The master's and the workers' roles (:mod:`tokenswarm.loadgen.roles`) make
these watches. Locust logs none of this at its default level, so a worker in
a container looked dead while it waited or worked. Now:

* a worker says it connected, to which master (host:port), and each change of
  the number of users it runs;
* a master says when a worker joins, quits, or goes missing (no heartbeat) and
  comes back, with how many are connected out of ``--expect-workers``. (It
  follows the master runner's messages and ``quit``, see
  :func:`tokenswarm.loadgen.workarounds.watch_master_messages`, to tell these
  apart from Locust's own comings and goings at each test stop and at its quit.)

One line each, on stderr beside Locust's own log (``docker compose logs``,
``kubectl logs``). Nothing here touches what is measured or written.
"""

from __future__ import annotations

import socket
import sys

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from tokenswarm.loadgen import workarounds

WATCH_S = 0.25  # how often the master looks at its workers
USERS_WATCH_S = 1.0  # how often a worker looks at its user count


def say(line: str) -> None:
    print(f"tokenswarm: {line}", file=sys.stderr, flush=True)


def worker_label(runner: MasterRunner, client_id: str) -> str:
    """``w3`` (Locust's worker index), as requests.csv and run.json name the worker."""
    index = workarounds.worker_index(runner, client_id)
    return f"w{index}" if index is not None else client_id


class WorkerWatch:
    """On a master: says when a worker joins, quits, goes missing (no heartbeat) or comes back.

    Joins and quits come from the worker's own messages (``client_ready``, ``quit``), seen through the
    runner's message handler: Locust also drops a worker from ``runner.clients`` at every test stop
    (``client_stopped``) and adds it back once it is ready again, which is no leaving. Missing and back
    are states Locust's heartbeat checker sets; they are looked at every :data:`WATCH_S`."""

    def __init__(self, environment: Environment, runner: MasterRunner) -> None:
        self.runner = runner
        self.expected = getattr(environment.parsed_options, "expect_workers", None)
        self.workers: dict[str, str] = {}  # client id -> its label, for every worker connected
        self.missing: set[str] = set()
        self.greenlet = gevent.spawn(self._loop)
        workarounds.watch_master_messages(runner, self.on_message, self.stop)  # no "left" line at the master's quit
        # a worker may have joined before this watch: Locust's listener runs from the runner's start, and the
        # master's start can yield before tokenswarm's init (seen with 4 containers: w0 joined unannounced)
        for cid in workarounds.worker_states(runner):
            self.on_message(cid, "client_ready")

    def _loop(self) -> None:
        while True:
            gevent.sleep(WATCH_S)
            self.check()

    def _of(self) -> str:
        n = len(self.workers) - len(self.missing)
        return f"{n} of {self.expected} expected" if self.expected else str(n)

    def on_message(self, client_id: str, kind: str) -> None:
        """After the runner handled a worker's message of this kind."""
        if kind == "client_ready" and client_id not in self.workers and client_id in workarounds.worker_states(
                self.runner):
            label = self.workers[client_id] = worker_label(self.runner, client_id)
            say(f"worker {label} joined from {workarounds.worker_host(client_id)}; {self._of()} connected")
        elif kind == "quit" and client_id in self.workers:
            label = self.workers.pop(client_id)
            if client_id not in self.missing:
                say(f"worker {label} left; {self._of()} connected")
            self.missing.discard(client_id)

    def check(self) -> None:
        states = workarounds.worker_states(self.runner)
        for cid, label in list(self.workers.items()):
            state = states.get(cid)
            if state is None:
                if cid in self.missing:  # missing for a minute: Locust gave up on it (already said)
                    del self.workers[cid]
                    self.missing.discard(cid)
                continue  # else stopped its users (client_stopped), to be ready again
            if state == workarounds.MISSING and cid not in self.missing:
                self.missing.add(cid)
                say(f"worker {label} is missing (no heartbeat); {self._of()} connected")
            elif state != workarounds.MISSING and cid in self.missing:
                self.missing.discard(cid)
                say(f"worker {label} is back; {self._of()} connected")

    def stop(self) -> None:
        self.greenlet.kill(block=False)


class UserWatch:
    """On a worker: says how many users it runs whenever that number changes."""

    def __init__(self, runner: WorkerRunner, name: str) -> None:
        self.runner = runner
        self.name = name
        self.users = 0
        # Locust's worker runner is made connected: its constructor waits for the master's answer
        say(f"worker {name} connected to master {runner.master_host}:{runner.master_port} "
            f"(host {socket.gethostname()})")
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
        """The worker quits."""
        self.greenlet.kill(block=False)
        say(f"worker {self.name}: exiting")
