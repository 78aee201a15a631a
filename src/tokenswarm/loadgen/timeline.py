"""A test's level timeline and its ending: plain objects (no Locust, no gevent), tested on their own.

* :class:`LevelTimeline`: the levels a test went through, each ``{"level", "start", "end"}`` in epoch
  seconds (``end`` None while it runs). run.json's ``timeline`` and every per-level window of the report
  come from it; a level's measurement window is its [start, end] less its warm-up (README, "Metrics").
* :class:`Ending`: when a test stops sending (its ``--duration`` is up, or its ``--requests`` budget spent)
  and when it stops (every request in flight finished, or ``--stop-timeout`` passed since it stopped
  sending: those still in flight are then cancelled and recorded as such).
"""

from __future__ import annotations

from typing import Any

DURATION = "duration"
REQUESTS = "requests"
DRAINED = "drained"
TIMED_OUT = "timed_out"


class LevelTimeline:
    """The levels of one test in order; the last one is open (running) until :meth:`close`."""

    def __init__(self) -> None:
        self.segments: list[dict[str, Any]] = []

    def begin(self, level: float, t: float) -> dict[str, Any]:
        """A new level from epoch ``t``: the open one (if any) ends at ``t``. Returns the new segment."""
        self.close(t)
        seg = {"level": level, "start": t, "end": None}
        self.segments.append(seg)
        return seg

    def close(self, t: float) -> bool:
        """End the open level at epoch ``t`` (load stops now; requests in flight may still finish). Returns
        whether one was open."""
        if self.segments and self.segments[-1]["end"] is None:
            self.segments[-1]["end"] = t
            return True
        return False

    @property
    def current(self) -> dict[str, Any] | None:
        """The last segment (open or not); None before the first level."""
        return self.segments[-1] if self.segments else None

    @property
    def level(self) -> float | None:
        """The last segment's level; None before the first."""
        return self.segments[-1]["level"] if self.segments else None

    @property
    def running(self) -> bool:
        """A level is open."""
        return bool(self.segments) and self.segments[-1]["end"] is None

    def __len__(self) -> int:
        return len(self.segments)

    def __iter__(self):
        return iter(self.segments)


class Ending:
    """When a test stops sending and when it stops (monotonic seconds throughout).

    ``duration_s``: the test stops sending this long after ``started`` (None: no time limit; a sweep's shape
    ends it instead)."""

    def __init__(self, started: float, duration_s: float | None) -> None:
        self.deadline = started + duration_s if duration_s else None
        self.draining_since: float | None = None  # when it stopped sending
        self.why = ""  # DURATION, REQUESTS, or what the caller said (a sweep's last level)

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def drain(self, now: float, why: str) -> bool:
        """Stop sending now; returns False if it already had."""
        if self.draining_since is not None:
            return False
        self.draining_since = now
        self.why = why
        return True

    def should_drain(self, now: float, budget_spent: bool) -> str | None:
        """Why the test should stop sending now (DURATION, REQUESTS), or None: not yet, or already draining."""
        if self.draining:
            return None
        if self.deadline is not None and now >= self.deadline:
            return DURATION
        if budget_spent:
            return REQUESTS
        return None

    def should_stop(self, now: float, in_flight_done: bool, stop_timeout_s: float) -> str | None:
        """Once draining: DRAINED when every request finished, TIMED_OUT when ``stop_timeout_s`` (Locust's
        ``--stop-timeout``, which the web UI may change meanwhile) passed with some still in flight (they are
        to be cancelled); None otherwise."""
        if self.draining_since is None:
            return None
        if in_flight_done:
            return DRAINED
        if now - self.draining_since > stop_timeout_s:
            return TIMED_OUT
        return None
