"""The users of one process during one test, and what they share: the load they drive.

One :class:`Swarm` lives on every process that runs users (the single local process, or a worker) from
test start to test stop. It holds the collaborators, each owning one job, and keeps what the users share:

* the level new requests belong to, and its strategy (:mod:`tokenswarm.strategies`): a closed loop sends
  when a user is free; an open loop waits for the next planned send of this process's share
  (:meth:`Swarm.next_send`);
* the request budget (:mod:`tokenswarm.loadgen.budget`): this process's own ``--requests``, or every request
  granted by the master first;
* prompts and bodies (:class:`tokenswarm.loadgen.calls.CallFactory`);
* finished records (:class:`tokenswarm.loadgen.recordsink.RecordSink`);
* the count of requests started and in flight, and the end: no new requests once the test stops sending.

The users (:mod:`tokenswarm.loadgen.users`) drive it; the process's load (:mod:`tokenswarm.loadgen.load`)
announces levels and the end to it.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from tokenswarm import capture, priority, strategies
from tokenswarm.client import Connection, StreamCall
from tokenswarm.datasets import Prompt
from tokenswarm.loadgen.budget import Budget, LocalBudget
from tokenswarm.loadgen.calls import CallFactory
from tokenswarm.loadgen.recordsink import RecordSink
from tokenswarm.measure import RequestRecord
from tokenswarm.pushback import Backoff
from tokenswarm.settings import Settings
from tokenswarm.strategies import Schedule, Strategy
from tokenswarm.workloads import TracePrompts, load_trace

if TYPE_CHECKING:
    from locust.env import Environment


_CAPTURES: dict[int, capture.Capture] = {}  # one packet capture per process and target port
#: how often the event loop reads the capture's ring (its 1024 blocks hold about 2 s): often enough that a record
#: seldom waits, and each read is short
CAPTURE_DRAIN_S = 0.02


def process_capture(settings: Settings, worker: str) -> capture.Capture | None:
    """The process's packet capture for ``settings``' target (--timing capture), opened once and drained by a
    greenlet every :data:`CAPTURE_DRAIN_S` (each record drains it too: tokenswarm.client); None for --timing read,
    or where it cannot run here (a worker without CAP_NET_RAW: it says so in one line and its requests are timed
    by their reads, requests.csv timing_source ``read``)."""
    if settings.timing != "capture":
        return None
    port = settings.target.port
    cap = _CAPTURES.get(port)
    if cap is None:
        try:
            cap = capture.Capture(port, capture.interface_for(settings.target.host))
        except capture.CaptureError as e:
            print(f"tokenswarm: {worker}: {e}; this process's requests are timed by their reads", flush=True)
            return None
        _CAPTURES[port] = cap
        gevent.spawn(_drain, cap)
    return cap


def _drain(cap: capture.Capture) -> None:
    while True:
        cap.drain()
        gevent.sleep(CAPTURE_DRAIN_S)


class Swarm:
    """The users of one process (``worker``: its name in the records; shard ``shard`` of ``shards`` of the
    dataset or trace). ``sink``: where finished rows go; ``budget``: asked before every request (default:
    ``--requests`` of this process alone). SettingsError for a dataset file that cannot be read."""

    def __init__(self, environment: Environment, settings: Settings, worker: str, shard: int, sink: Any,
                 shards: int = 1, tokenizer: Any = None, budget: Budget | None = None) -> None:
        self.env = environment
        self.settings = settings
        self.worker = worker
        #: this process's scheduling priority, as asked (--priority) and got (tokenswarm.priority)
        self.priority = priority.apply(settings.priority)
        if settings.priority != "normal":
            print(f"tokenswarm: {worker}: priority {self.priority['got']}"
                  + (f" (asked {settings.priority}; refused: {self.priority['why']})" if self.priority["why"] else ""),
                  flush=True)
        shards = max(shards, 1)
        self.shard = shard % shards
        self.shards = shards
        self.tokenizer = tokenizer
        self._rng = random.Random(settings.seed * 7919 + self.shard)
        #: the process's packet capture (--timing capture; None: the reads time the responses)
        self.capture = process_capture(settings, worker)
        self.calls = CallFactory(settings, worker, self.shard, shards, tokenizer, users=self._user_count,
                                 rng=self._rng, capture=self.capture)
        secret = any(len(v) >= 6 for v in settings.headers.values())
        self.records = RecordSink(environment, worker, sink, settings.scrub if secret else None)
        #: may one more request be sent: this process's own (``--requests``), or granted by the master
        self.budget: Budget = budget or LocalBudget(settings.requests or None)
        self.trace: strategies.Trace | None = None
        if settings.trace:
            entries = load_trace(settings.trace, settings.trace_speed)
            self.trace = strategies.Trace(entries, TracePrompts(settings.seed, tokenizer), settings.max_concurrency)
        self.level: float = 0
        self.strategy: Strategy | None = None
        self.schedule: Schedule | None = None
        self.in_flight = 0  # requests sent and not yet finished
        self.started = 0  # requests started
        self.draining = False  # the test is ending: no new requests
        self.held = False  # level 0: an open loop's sends wait for the next level (set_level)
        self._stopping = Event()  # set when the test ends: users waiting (backoff, grants) give up
        self._users = itertools.count(0)
        self._gate = Semaphore(1)  # open loop: one user at a time waits for the next planned send
        self._wake = Event()
        self._workers = 1
        self.lifetime_s: float | None = None  # a request's lifetime (send to close) lately, for the stagger
        self._pilot: Event | None = None  # set once the first request ended (its lifetime is then known)

    def _user_count(self) -> int:
        return int(getattr(self.env.runner, "user_count", 0) or 0)

    @property
    def open_loop(self) -> bool:
        """Sends wait for planned times (:meth:`next_send`): a rate level, or a hold (:meth:`set_level` 0)."""
        return self.held or (self.strategy is not None and self.strategy.open_loop)

    # -- levels ------------------------------------------------------------------------------------
    def set_level(self, level: float, workers: int = 1, start: float | None = None) -> None:
        """New requests belong to ``level``, which began at epoch ``start`` (the master's clock; None: now),
        shared by ``workers`` processes. Its strategy (:func:`tokenswarm.strategies.for_level`) paces the
        sends from now on; a trace's schedule runs once, from its level's start. Level 0 holds an open loop:
        no new sends until the next level (a capacity search waits so for a failing rate probe's requests to
        end before it probes a lower rate)."""
        if level <= 0:
            if self.trace is None:
                # next_send waits (also on a swarm that starts during the hold: no strategy yet); the next
                # level takes a fresh schedule
                self.level, self.schedule, self.held = 0, None, True
                self._wake.set()
                self._wake = Event()
            return
        self.held = False
        changed = level != self.level or workers != self._workers
        self.level = level
        self._workers = workers
        if self.trace is not None and self.schedule is not None:
            return
        if not changed and self.strategy is not None:
            return
        self.strategy = strategies.for_level(self.settings, level, self.trace)
        begin = time.perf_counter() + (0.0 if start is None or self.trace is None else start - time.time())
        if self.trace is not None:  # the trace is split by the dataset's shares
            self.schedule = self.strategy.schedule(begin, self.shard, self.shards, self._rng)
        else:
            self.schedule = self.strategy.schedule(begin, 0, workers, self._rng)
        self._wake.set()
        self._wake = Event()

    def stagger(self) -> None:
        """A closed-loop user's first send of a level waits a random part of the spread, so a level's new users
        do not send together and stay in lockstep (``--no-stagger``: they do, as vLLM's bench). The spread is
        one request lifetime (what this process's requests took lately), at most a fifth of the shortest timed
        level (:meth:`tokenswarm.settings.Settings.stagger_spread_s`); before any request has ended, that fifth.
        A run with no timed level (``--requests``) learns the lifetime first: its first user sends at once (the
        pilot) and the others wait for it. Returns at once in an open loop or once the test is ending."""
        if not self.settings.stagger or self.open_loop or self.draining:
            return
        cap = self.settings.stagger_spread_s()
        if self.lifetime_s is None and cap is None:
            if self._pilot is None:
                self._pilot = Event()
                return  # this user is the pilot
            self._pilot.wait(self.settings.read_timeout)
        spread = self.lifetime_s if cap is None else min(self.lifetime_s or cap, cap)
        if spread:
            self._stopping.wait(self._rng.uniform(0.0, spread))

    def _ended(self, rec: RequestRecord) -> None:
        """A request ended: the lifetime estimate follows the ok ones (an average over the last ~16)."""
        if rec.ok and rec.close_ms:
            life = rec.close_ms / 1000.0
            self.lifetime_s = life if self.lifetime_s is None else self.lifetime_s + (life - self.lifetime_s) / 16
        if self._pilot is not None and not self._pilot.is_set():
            self._pilot.set()

    def next_send(self) -> tuple[float, Prompt | None] | None:
        """Open loop: wait for the next planned send of this process; returns it (perf_counter s) and, for a
        trace, the prompt the trace gives it. None once the test is ending."""
        with self._gate:
            while not self.draining:
                schedule, wake = self.schedule, self._wake
                if schedule is None:
                    wake.wait(0.05)
                    continue
                delay = schedule.t - time.perf_counter()
                if delay > 0 and wake.wait(delay if delay != float("inf") else None):
                    continue  # the level changed while waiting: take the new schedule
                if schedule is not self.schedule or self.draining:
                    continue
                return schedule.take()
        return None

    # -- the end -----------------------------------------------------------------------------------
    def stop_sending(self) -> None:
        """The test is ending: no new requests; users waiting for their next send time, a grant or the end
        of a backoff give up now."""
        self.draining = True
        self._wake.set()
        self._stopping.set()
        self.budget.close()

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a backoff after a failure), or less if the test ends meanwhile."""
        self._stopping.wait(seconds)

    @property
    def exhausted(self) -> bool:
        """The request budget is spent."""
        return self.budget.exhausted

    # -- users -------------------------------------------------------------------------------------
    def next_user(self) -> int:
        return next(self._users)

    def connection(self) -> Connection:
        return self.calls.connection()

    def backoff(self) -> Backoff:
        """A user's waits after failures (--no-backoff, --max-backoff)."""
        return Backoff(self.settings.backoff, self.settings.max_backoff_s, random.Random(self._rng.random()))

    def take_ticket(self) -> bool:
        """May one more request be sent now? False once the budget is spent or the test is ending. On a worker
        this waits for the master's grant, so the master learns of the request before the server does."""
        if self.draining:
            return False
        if not self.budget.acquire():
            return False
        if self.draining:  # the test ended while the grant was on its way
            self.budget.release()
            return False
        return True

    def run(self, call: StreamCall) -> RequestRecord:
        """Send ``call`` and read its stream to the end: its record (every outcome is one). It counts as in
        flight meanwhile. A user stopped mid-request (``GreenletExit`` at the test's end) gets the exception
        and records ``call.abort(...)``."""
        self.in_flight += 1
        self.started += 1
        try:
            rec = call.run()
        finally:
            self.in_flight -= 1
        self._ended(rec)
        return rec

    def counts(self) -> tuple[int, int]:
        """(requests started, requests in flight): a worker's heartbeat to its master."""
        return self.started, self.in_flight

    def close(self) -> None:
        """The test stopped: stop building bodies and report every queued record."""
        self.calls.close()
        self.records.flush()
        if self.capture is not None:
            s = self.capture.stats()
            print(f"tokenswarm: {self.worker}: packet capture: {s['segments']:.0f} data segments, "
                  f"{s['kernel_drops']:.0f} dropped by the kernel, {s['cpu_s']:.2f} s of CPU", flush=True)
