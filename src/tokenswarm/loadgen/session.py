"""Per-process state of a test: settings, prompts, request budget, level, record sink.

One :class:`Session` lives on every process that runs users (the local runner
or a worker) from test start to test stop. Users take prompts and request
tickets from it and hand it their finished records; it stamps them (level,
worker, user), feeds Locust's statistics (one ``request`` event per request,
plus TTFT and TPOT rows outside Locust's total) and passes the rows on to the
sink: the run writer in a single process, the shipper to the master on a
worker.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from tokenswarm import records
from tokenswarm.arrivals import Arrivals, Schedule
from tokenswarm.client import Connection, StreamCall, request_head
from tokenswarm.datasets import Prompt, open_dataset
from tokenswarm.loadgen.budget import Budget, LocalBudget
from tokenswarm.measure import FAILURE_KINDS, RequestRecord, epoch
from tokenswarm.pushback import Backoff
from tokenswarm.settings import Settings
from tokenswarm.sweep import RATE
from tokenswarm.workloads import (
    Conversations,
    SharedPrefixes,
    TraceArrivals,
    TraceEntry,
    TracePrompts,
    load_trace,
)

if TYPE_CHECKING:
    from locust.env import Environment

log = logging.getLogger("tokenswarm")

REQUEST_TYPE = "LLM"  # the "Type" column of Locust's stats for tokenswarm's rows
BOOK_DELAY_S = 0.02  # finished records are reported this soon after the first of a batch
BOOK_SLICE = 32  # records reported between yields to the event loop
READY_MIN = 64  # request bodies kept built ahead (at least; twice the users otherwise)
REFILL_SLICE = 16  # bodies built per idle moment
REFILL_S = 0.05
TRACE_LEAD_S = 1.0  # a trace's first arrival comes this long after its level starts


class LLMFailure(Exception):
    """What Locust's failure table shows for a failed request: ``<kind>: <error>``."""

    def __repr__(self) -> str:  # Locust's failure table shows repr(); keep it to the message
        return str(self)


class Session:
    """Everything the users of one process share during one test."""

    def __init__(self, environment: Environment, settings: Settings, worker: str, shard: int,
                 sink: Callable[[list[records.Row]], None], shards: int = 1, tokenizer: Any = None,
                 budget: Budget | None = None) -> None:
        """``worker``: this process's name in the records (``local``, ``w0``...); ``shard`` of ``shards``: its
        share of the dataset or trace; ``sink``: where finished rows go (the run writer, or the shipper to the
        master); ``budget``: asked before every request (default: ``--requests`` of this process alone).
        SettingsError for a dataset file that cannot be read."""
        self.env = environment
        self.settings = settings
        self.worker = worker
        self.sink = sink
        # the dataset (or trace) is split among the workers: this process takes shard ``shard`` of ``shards``
        shards = max(shards, 1)
        shard %= shards
        self.shard = shard
        self.tokenizer = tokenizer
        self.prompts: Any = None  # single requests: the prompt source
        self.conversations: Conversations | None = None  # multi-turn
        self.trace: list[TraceEntry] | None = None  # trace replay: this process's share of the arrivals
        if settings.trace:
            self.trace = load_trace(settings.trace, settings.trace_speed)[shard::shards]
            self.trace_prompts = TracePrompts(settings.seed, tokenizer)
        elif settings.turns:
            path = settings.dataset.path if settings.dataset.name == "sharegpt" else ""
            self.conversations = Conversations(settings.turns, settings.turn_input_len, settings.seed, shard,
                                               tokenizer, path, shards)
        else:
            self.prompts = open_dataset(settings.dataset, shard, shards, tokenizer, settings.request.max_tokens)
            if settings.prefix_len:
                self.prompts = SharedPrefixes(self.prompts, settings.prefix_len, settings.num_prefixes,
                                              settings.seed, shard, tokenizer)

        self.head = request_head(
            settings.target, "POST", settings.endpoint,
            {"Content-Type": "application/json", "Accept": "text/event-stream", **settings.headers},
        )
        self.level: float = 0
        self.in_flight = 0  # requests sent and not yet finished
        self.sent = 0  # records finished
        self.sent_started = 0  # requests started
        self.count_tokens: Callable[[str], int] | None = tokenizer.count if tokenizer is not None else None
        #: may one more request be sent: this process's own (``--requests``), or granted by the master
        self.budget: Budget = budget or LocalBudget(settings.requests or None)
        self.draining = False  # the test is ending: no new requests
        self._stopping = Event()  # set when the test ends: users waiting (backoff, grants) give up
        self._ids = itertools.count(1)
        self._users = itertools.count(0)
        self._secrets = [v for v in settings.headers.values() if len(v) >= 6]
        self._fire = environment.events.request.fire
        self._done: list[RequestRecord] = []  # finished, not yet reported
        self._book: gevent.Greenlet | None = None
        self._ready: deque[tuple[str, int | None, bytes]] = deque()  # request bodies built ahead
        self._refiller: gevent.Greenlet | None = gevent.spawn(self._refill)
        self._prefix = f"{worker}-{os.getpid():x}-"
        # rate mode: one user at a time waits for the next planned arrival
        self.rate_mode = settings.mode == RATE
        self.arrivals: Schedule | None = None
        self._gate = Semaphore(1)
        self._wake = Event()
        self._rng = random.Random(settings.seed * 7919 + shard)

    def dataset_books(self) -> dict[str, Any] | None:
        """The file dataset's books (records read, used, skipped by reason); None for other sources."""
        source = getattr(self.prompts, "base", self.prompts)  # shared prefixes wrap the dataset
        describe = getattr(source, "describe", None)
        info = describe() if describe is not None else None
        return info if info and "records" in info else None

    def set_level(self, level: float, workers: int = 1, start: float | None = None) -> None:
        """New requests belong to ``level``, which began at epoch ``start`` (the master's clock; None: now);
        in rate mode this process now sends level/workers req/s (a trace: its share of the trace's arrivals)."""
        changed = level != self.level
        self.level = level
        if self.trace is not None:
            if self.arrivals is None:
                # the trace starts a moment after its level, once the users are up to send it; every worker
                # counts from the level's start, so their shares keep the trace's own spacing
                begin = time.perf_counter() + (0.0 if start is None else start - time.time()) + TRACE_LEAD_S
                self.arrivals = TraceArrivals(self.trace, begin, self.trace_prompts, self.shard)
                self._wake.set()
                self._wake = Event()
            return
        if self.rate_mode and (changed or self.arrivals is None or workers != getattr(self, "_workers", 1)):
            self._workers = workers
            s = self.settings
            self.arrivals = Arrivals(level / max(workers, 1), time.perf_counter(), s.arrival, s.burstiness, self._rng)
            self._wake.set()
            self._wake = Event()

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

    def next_arrival(self) -> tuple[float, Prompt | None] | None:
        """Rate mode: wait for the next planned send time; returns it and, replaying a trace, the prompt the
        trace gives it (None once the test is ending)."""
        with self._gate:
            while not self.draining:
                arrivals, wake = self.arrivals, self._wake
                if arrivals is None:
                    wake.wait(0.05)
                    continue
                delay = arrivals.t - time.perf_counter()
                if delay > 0 and wake.wait(delay if delay != float("inf") else None):
                    continue  # the level changed while waiting: take the new schedule
                if arrivals is not self.arrivals or self.draining:
                    continue
                return arrivals.take()
        return None

    # -- users ------------------------------------------------------------------------
    def next_user(self) -> int:
        return next(self._users)

    def connection(self) -> Connection:
        s = self.settings
        return Connection(s.target, s.connect_timeout, s.read_timeout)

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

    def _prepare(self, prompt: Prompt | None = None) -> tuple[Prompt, bytes]:
        """The next prompt (or ``prompt``) and its request body bytes."""
        if prompt is None:
            prompt = next(self.prompts)
        s = self.settings
        return prompt, json.dumps(s.dialect.body(prompt, s.request), separators=(",", ":")).encode()

    def _refill(self) -> None:
        """Keep request bodies ready, built while the event loop is idle: a user that finishes a request
        sends the next at once, without building a prompt in the middle of other streams' reads."""
        ready = self._ready
        if self.prompts is None:
            return  # conversations and traces build each request when it is due
        while True:
            want = max(READY_MIN, 2 * int(getattr(self.env.runner, "user_count", 0) or 0))
            if len(ready) >= want:
                gevent.sleep(REFILL_S)
                continue
            gevent.idle()
            for _ in range(min(REFILL_SLICE, want - len(ready))):
                ready.append(self._prepare())

    def call(self, conn: Connection, prompt: Prompt | None = None) -> StreamCall:
        """The next request (of ``prompt``, else the next prompt of the source), ready to run on ``conn``."""
        if prompt is not None:
            prompt, body = self._prepare(prompt)
        else:
            prompt, body = self._ready.popleft() if self._ready else self._prepare()
        rid = self._prefix + str(next(self._ids))
        cancel_after = None
        rate = self.settings.cancel_rate
        if rate and self._rng.random() < rate:  # this user will close the tab after a few tokens
            n = prompt.max_tokens or self.settings.request.max_tokens
            cancel_after = self._rng.randint(1, max(1, n - 1))
        call = StreamCall(conn, self.settings.dialect, self.head + b"X-Request-Id: " + rid.encode() + b"\r\n", body,
                          rid, input_tokens=prompt.input_tokens, count_tokens=self.count_tokens,
                          cancel_after=cancel_after)
        call.prompt = prompt  # type: ignore[attr-defined]
        return call

    def run(self, call: StreamCall) -> RequestRecord:
        """Send ``call`` and read its stream to the end: its record (every outcome is one). It counts as in
        flight meanwhile. A user stopped mid-request (``GreenletExit`` at the test's end) gets the exception
        and records ``call.abort(...)`` through :meth:`finish`."""
        self.in_flight += 1
        self.sent_started += 1
        try:
            return call.run()
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        """Stop the background greenlets and report what is queued."""
        if self._refiller is not None:
            self._refiller.kill(block=False)
            self._refiller = None
        self.flush()

    def finish(self, rec: RequestRecord, user: int, prompt: Prompt, level: float,
               scheduled: float | None = None) -> None:
        """Stamp a finished record and queue it: the bookkeeper reports it to Locust and passes its row on,
        between other greenlets' reads, so a user sends its next request without waiting for that work."""
        rec.level = level
        if scheduled is not None:
            rec.scheduled_time = epoch(scheduled)
        rec.worker = self.worker
        rec.user = user
        rec.prompt_id = prompt.id
        rec.prefix_id = prompt.prefix_id
        rec.conversation_id = prompt.conversation_id
        rec.turn = prompt.turn
        self.sent += 1
        self._done.append(rec)
        if self._book is None:
            self._book = gevent.spawn_later(BOOK_DELAY_S, self._bookkeeper)

    def _bookkeeper(self) -> None:
        """Report queued records in small slices, each when the event loop is idle (streams' reads first)."""
        while self._done:
            gevent.idle()
            batch, self._done = self._done[:BOOK_SLICE], self._done[BOOK_SLICE:]
            self._report(batch)
        self._book = None

    def flush(self) -> None:
        """Report every queued record now (test stop, drain): nothing is left behind."""
        if self._book is not None and self._book is not gevent.getcurrent():
            self._book.kill(block=False)
            self._book = None
        batch, self._done = self._done, []
        if batch:
            self._report(batch)

    def _report(self, batch: list[RequestRecord]) -> None:
        rows = []
        for rec in batch:
            self._fire_events(rec)
            rows.append(records.to_row(rec))
        self.sink(rows)

    def _fire_events(self, rec: RequestRecord) -> None:
        """Feed Locust's statistics: one ``request`` event per request (``E2E``, its size the bytes received),
        so Locust's total (RPS, failures/s, request count) counts each request once; TTFT and TPOT go into
        their own rows only (logged straight into their stats entries, outside the total). A worker ships
        entries and the total to the master separately, so this holds there too."""
        if self._secrets and rec.error:
            rec.error = self.settings.scrub(rec.error)
        if rec.ok:
            stats = self.env.stats
            stats.get("TTFT", REQUEST_TYPE).log(rec.ttft_ms, 0)
            if rec.tpot_ms is not None:
                stats.get("TPOT", REQUEST_TYPE).log(rec.tpot_ms, 0)
            self._fire(request_type=REQUEST_TYPE, name="E2E", response_time=rec.e2e_ms,
                       response_length=rec.received_bytes, exception=None, context={})
        elif rec.status in FAILURE_KINDS:
            self._fire(request_type=REQUEST_TYPE, name="E2E", response_time=rec.close_ms or 0.0,
                       response_length=rec.received_bytes, exception=LLMFailure(f"{rec.status}: {rec.error}"),
                       context={})

    def public(self) -> dict[str, Any]:
        return {"worker": self.worker, "pid": os.getpid(), "sent": self.sent}
