"""Finished requests, from a user's hands to the run folder's rows: stamped, told to Locust, batched.

A user hands its finished :class:`tokenswarm.measure.RequestRecord` to the process's :class:`RecordSink`,
which stamps it (level, worker, user, prompt, scheduled send time) and queues it. A bookkeeper greenlet
then, in small slices and only when the event loop is idle (the streams' reads come first), scrubs secrets
from error texts, feeds Locust's statistics (one ``request`` event per request, E2E, so Locust's total
counts each request once; TTFT and TPOT in rows of their own, outside the total) and passes the rows on to
``sink``: the run recorder on a single process, the agent that ships them to the master on a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent

from tokenswarm import requestscsv
from tokenswarm.datasets import Prompt
from tokenswarm.loadgen import workarounds
from tokenswarm.measure import FAILURE_KINDS, RequestRecord, epoch

if TYPE_CHECKING:
    from locust.env import Environment

REQUEST_TYPE = "LLM"  # the "Type" column of Locust's stats for tokenswarm's rows
BOOK_DELAY_S = 0.02  # finished records are reported this soon after the first of a batch
BOOK_SLICE = 32  # records reported between yields to the event loop


class LLMFailure(Exception):
    """What Locust's failure table shows for a failed request: ``<kind>: <error>``."""

    def __repr__(self) -> str:  # Locust's failure table shows repr(); keep it to the message
        return str(self)


class RecordSink:
    """Stamps, reports to Locust and passes on the finished records of one process's users.

    ``worker``: the process's name in the records; ``scrub``: the settings' secret scrubber for error texts
    (None: no secrets); ``sink``: where the rows go, a list at a time."""

    def __init__(self, environment: Environment, worker: str, sink: Callable[[list[requestscsv.Row]], None],
                 scrub: Callable[[str], str] | None = None) -> None:
        self.env = environment
        self.worker = worker
        self.sink = sink
        self.scrub = scrub
        self.finished = 0  # records handed in
        self._fire = environment.events.request.fire
        self._done: list[RequestRecord] = []  # finished, not yet reported
        self._book: gevent.Greenlet | None = None

    def finish(self, rec: RequestRecord, user: int, prompt: Prompt, level: float,
               scheduled: float | None = None) -> None:
        """Stamp a finished record and queue it; the bookkeeper reports it between other greenlets' reads, so
        a user sends its next request without waiting for that work."""
        rec.level = level
        if scheduled is not None:
            rec.scheduled_time = epoch(scheduled)
        rec.worker = self.worker
        rec.user = user
        rec.prompt_id = prompt.id
        rec.prefix_id = prompt.prefix_id
        rec.conversation_id = prompt.conversation_id
        rec.turn = prompt.turn
        self.finished += 1
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
            self._tell_locust(rec)
            rows.append(requestscsv.to_row(rec))
        self.sink(rows)

    def _tell_locust(self, rec: RequestRecord) -> None:
        """One ``request`` event per request (``E2E``, its size the bytes received), so Locust's total (RPS,
        failures/s, request count) counts each request once; TTFT and TPOT go into their own rows only. A
        worker ships entries and the total to the master separately, so this holds there too."""
        if self.scrub is not None and rec.error:
            rec.error = self.scrub(rec.error)
        if rec.ok:
            stats = self.env.stats
            workarounds.log_outside_total(stats, "TTFT", REQUEST_TYPE, rec.ttft_ms)
            if rec.tpot_ms is not None:
                workarounds.log_outside_total(stats, "TPOT", REQUEST_TYPE, rec.tpot_ms)
            self._fire(request_type=REQUEST_TYPE, name="E2E", response_time=rec.e2e_ms,
                       response_length=rec.received_bytes, exception=None, context={})
        elif rec.status in FAILURE_KINDS:
            self._fire(request_type=REQUEST_TYPE, name="E2E", response_time=rec.close_ms or 0.0,
                       response_length=rec.received_bytes, exception=LLMFailure(f"{rec.status}: {rec.error}"),
                       context={})

    def public(self) -> dict[str, Any]:
        return {"worker": self.worker, "finished": self.finished}
