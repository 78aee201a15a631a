"""Load shapes: Locust ``LoadTestShape`` classes that step a test through its levels.

A shape owns the stepping: which level of the plan runs, since when, and when it is done (its
``--level-duration`` is up, or ``--level-requests`` of its requests finished). It tells the run's
controller when a level begins (the controller keeps the timeline, tells the users and the workers)
and when the last one is done (no new requests; those in flight finish). It reads the plan from the
settings the process built once (:class:`tokenswarm.loadgen.roles.Role`), never from the options.

* :class:`ConcurrencySweep`: ``--levels 1,2,4,...``: that many users (closed loop) per level.
* :class:`RateSweep`: ``--rates 1,2,4``: requests per second (open loop), each level with
  ``--max-concurrency`` users waiting for their planned send times.
* :class:`TraceReplay`: ``--trace FILE``: one open-loop level at the trace's own arrival times.
* :class:`SweepShape`: whichever of the three the options ask for (the packaged sweep locustfile's).

Class attributes give a locustfile's defaults for the options of its kind (the command line, the
``TOKENSWARM_*`` variables and the web UI's form win over them)::

    class Sweep(ConcurrencySweep):
        levels = "1,2,4,8,16"
        level_duration = "30s"

Headless, in the web UI (the user count steps as levels advance) and on a master with workers alike.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from locust import LoadTestShape

from tokenswarm.capacity import FAILS, CapacitySearch
from tokenswarm.settings import Settings, SettingsError
from tokenswarm.sweep import CONCURRENCY, RATE, SweepPlan

if TYPE_CHECKING:
    from tokenswarm.loadgen.controller import RunController


class LevelShape(LoadTestShape):
    """What every tokenswarm shape shares: the plan's levels stepped one after the other.

    Attributes (set while a test runs): ``plan`` (:class:`tokenswarm.sweep.SweepPlan`), ``index`` (the
    running level's position in it; None before the test), ``level_started`` (monotonic s)."""

    abstract = True
    # the levels set the users: the web UI's form disables its "Number of users" and "Ramp up" fields (Locust's
    # "Disabled for tests using LoadTestShape class") and keeps tokenswarm's options
    use_common_options = False
    #: "concurrency", "rate" or "trace": what this shape steps (None: whatever the options ask for)
    kind: ClassVar[str | None] = None
    #: option defaults of a locustfile's shape (dest -> value), from the class attributes of its kind
    defaults_from: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.plan: SweepPlan | None = None
        self.index: int | None = None
        self.level: float = 0.0
        self.level_started = 0.0
        self.started = 0.0
        self.search: CapacitySearch | None = None
        self.held: float | None = None  # the next probe, while the requests of the one before end (RunController.hold)
        self._run: RunController | None = None

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The class attributes that stand for options (``levels = "1,2,4"``...), by option dest."""
        return {name: getattr(cls, name) for name in cls.defaults_from if getattr(cls, name, None) not in (None, "")}

    def check_options(self, values: dict[str, Any]) -> None:
        """SettingsError when option values (by dest) ask for another kind of test than this shape steps: checked
        before the shape's own defaults are added, so the error names what the user gave."""
        if self.kind is None:
            return
        flags = {CONCURRENCY: "levels", RATE: "rates", "trace": "trace"}
        for kind, dest in flags.items():
            if kind != self.kind and values.get(dest):
                raise SettingsError(f"the locustfile's load shape {type(self).__name__} takes --{flags[self.kind]}; "
                                    f"the options ask for a {kind} test (--{dest}; SweepShape takes any of them)")

    def check(self, settings: Settings) -> None:
        """SettingsError when the options ask for another kind of test than this shape steps."""
        asked = "trace" if settings.trace else settings.plan.mode if settings.plan is not None else None
        if asked is None:
            raise SettingsError(f"the locustfile's load shape {type(self).__name__} steps levels: give --levels, "
                                "--rates or --trace (or use a locustfile without a shape for one level)")
        if self.kind is not None and asked != self.kind:
            flag = {CONCURRENCY: "--levels", RATE: "--rates", "trace": "--trace"}[self.kind]
            raise SettingsError(f"the locustfile's load shape {type(self).__name__} takes {flag}; the options ask "
                                f"for a {asked} test (SweepShape takes any of them)")

    # -- the test ------------------------------------------------------------------------------------
    def attach(self, run: RunController, plan: SweepPlan) -> None:
        """A test starts: its first level begins now. A capacity search (``plan.capacity``) probes the levels
        :class:`tokenswarm.capacity.CapacitySearch` picks from the verdicts the run controller gives."""
        self._run = run
        self.plan = plan
        self.search = None
        self.held = None
        self._advancing = False
        # Locust ticks a shape once a second: a level that ends by its request count is stepped by the run
        # controller's watcher too (every 50 ms), or it ran on for up to a second of requests (109 where 40 were
        # asked, at 16 users of 0.1 s requests)
        run.on_watch = self.advance if any(plan.requests(i) for i in range(len(plan.levels))) else None
        self.started = time.monotonic()
        if plan.capacity:
            s = run.settings
            self.search = CapacitySearch(plan.levels[0], plan.levels[-1], integers=plan.mode == CONCURRENCY,
                                         resolution_pct=s.resolution_pct, max_probes=s.max_probes)
            self._begin(0, self.search.next_level())
        else:
            self._begin(0, plan.levels[0])

    def _begin(self, i: int, level: float) -> None:
        assert self.plan is not None and self._run is not None
        self.index = i
        self.level = level
        self.level_started = time.monotonic()
        self._run.begin_level(i, level)

    def _next(self) -> float | None:
        """The level after the one that just ended: the plan's next, or the capacity search's next probe."""
        assert self.plan is not None and self.index is not None and self._run is not None
        if self.search is None:
            i = self.index + 1
            return self.plan.levels[i] if i < len(self.plan.levels) else None
        seg = self._run.levels.current or {}
        now = time.monotonic()
        self.search.record(self.level, seg.get("verdict", FAILS), bool(seg.get("decided", True)),
                           now - self.level_started)
        return self.search.next_level(now - self.started)

    def tick(self) -> tuple[int, float] | None:
        run = self._run
        if run is None or run.finished:
            return self._first_tick()
        self.advance()
        assert self.plan is not None
        users = self.plan.users_at(self.level)
        return users, float(max(users, 1))  # each level's users start within a second (their sends spread)

    def advance(self) -> None:
        """Step the plan: end the running level when it has done its part (the run controller says), then begin
        the next one (a capacity search's next probe, after a hold where it steps a rate down), or end the
        levels. From Locust's tick, and from the run controller's watcher for levels that end by a count."""
        run, plan = self._run, self.plan
        if run is None or run.finished or plan is None or self.index is None or self._advancing:
            return
        self._advancing = True  # announcing a level may yield to the other caller
        try:
            self._advance(run, plan)
        finally:
            self._advancing = False

    def _advance(self, run: RunController, plan: SweepPlan) -> None:
        assert self.index is not None
        if self.held is not None:
            if run.draining or run.hold_over():
                nxt, self.held = self.held, None
                if not run.draining:
                    self._begin(self.index + 1, nxt)
        elif not run.draining and run.level_over(self.index, time.monotonic() - self.level_started):
            nxt = self._next()
            if nxt is None:
                run.end_of_levels()
            elif plan.mode == RATE and self.search is not None and nxt < self.level:
                self.held = nxt  # an open loop's backlog: the lower probe starts once it has drained
                run.hold()
            else:
                self._begin(self.index + 1, nxt)

    def _first_tick(self) -> tuple[int, float]:
        """Before a test (the web UI may start another after one ended: the run controller ends each test,
        not the shape): its first level's users, from the process's settings. Without a plan, one user: the
        test start reports the problem with the options and stops the test."""
        role = getattr(self.runner.environment, "tokenswarm", None) if self.runner is not None else None
        plan = role.plan() if role is not None else None
        if plan is None:
            return (1, 1.0)  # the test start will report the problem and stop
        users = plan.users(0)
        return users, float(max(users, 1))


class ConcurrencySweep(LevelShape):
    """Closed loop: ``levels`` users per level, each level for ``level_duration`` and/or until
    ``level_requests`` of its requests finished.

    Attributes (option defaults): ``levels`` ("1,2,4,8": users), ``level_duration`` ("30s", or one span per
    level), ``level_requests`` ("50", or one count per level)."""

    abstract = True
    kind = CONCURRENCY
    defaults_from = ("levels", "level_duration", "level_requests")
    levels: ClassVar[str] = ""
    level_duration: ClassVar[str] = ""
    level_requests: ClassVar[str] = ""


class RateSweep(LevelShape):
    """Open loop: ``rates`` requests per second per level (Poisson arrivals unless ``--arrival``), sent by
    ``max_concurrency`` users, each level for ``level_duration`` and/or until ``level_requests`` finished.

    Attributes (option defaults): ``rates`` ("1,2,4": req/s), ``level_duration``, ``level_requests``,
    ``max_concurrency`` (users; 0: the option's default)."""

    abstract = True
    kind = RATE
    defaults_from = ("rates", "level_duration", "level_requests", "max_concurrency")
    rates: ClassVar[str] = ""
    level_duration: ClassVar[str] = ""
    level_requests: ClassVar[str] = ""
    max_concurrency: ClassVar[int | None] = None


class TraceReplay(LevelShape):
    """Open loop at a trace's own arrival times (``--trace``: JSONL, Mooncake layout or BurstGPT CSV), each
    request with the trace's input and output lengths, sent by ``max_concurrency`` users; one level at the
    trace's mean rate, lasting the (scaled) trace.

    Attributes (option defaults): ``trace`` (a path), ``trace_speed`` (2: twice as fast),
    ``max_concurrency``."""

    abstract = True
    kind = "trace"
    defaults_from = ("trace", "trace_speed", "max_concurrency")
    trace: ClassVar[str] = ""
    trace_speed: ClassVar[float | None] = None
    max_concurrency: ClassVar[int | None] = None


class SweepShape(LevelShape):
    """A concurrency sweep (``--levels``), a request-rate sweep (``--rates``) or a trace replay (``--trace``),
    whichever the options ask for: the shape of the packaged sweep locustfile and of locustfiles/sweep.py."""
