"""One test, from its start to its last file: the level clock, the ending, and what is watched live.

A :class:`RunController` lives on the master or the single local process for one test. It keeps the level
timeline (a sweep's shape says when each level begins; without one, the user count sets the level) and
announces each level to the load it drives (:class:`tokenswarm.loadgen.load.Load`: this process's users, or
the master's workers); it ends the test (no new requests once its duration or request budget is spent or
the last level is done, then those in flight finish, up to ``--stop-timeout``:
:class:`~tokenswarm.loadgen.timeline.Ending` decides when); it watches the run live (progress lines, the web
UI's figures and charts, the client self-check, the engine's /metrics); and at the end it has the
:class:`~tokenswarm.loadgen.recorder.RunRecorder` close the run folder's files, builds the report and sets
the exit code. Load shapes and the web UI talk to it through its public methods.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

from tokenswarm import capacity, enginemetrics, provenance, selfcheck
from tokenswarm.datasets.files import counts_line
from tokenswarm.exitstatus import ExitStatus, failure_ratio, failures_message
from tokenswarm.loadgen import workarounds
from tokenswarm.loadgen.enginescrape import EngineMetricsSampler
from tokenswarm.loadgen.livewatch import LiveWatch, Series
from tokenswarm.loadgen.load import Load
from tokenswarm.loadgen.recorder import RunRecorder
from tokenswarm.loadgen.timeline import DURATION, TIMED_OUT, Ending, LevelTimeline
from tokenswarm.report.intervals import Interval
from tokenswarm.report.levels import SLO_KEYS, judge, lifetimes
from tokenswarm.report.live import S as SAMPLE
from tokenswarm.requestscsv import Row
from tokenswarm.runfolder import LEVELS_CSV, REPORT_HTML
from tokenswarm.settings import Settings
from tokenswarm.sweep import CONCURRENCY, level_str

if TYPE_CHECKING:
    from locust.env import Environment

    from tokenswarm.loadgen.exporter import Exporter

#: a capacity probe's verdict in the console's words
MEETS = {capacity.HOLDS: "meets", capacity.FAILS: "misses"}

log = logging.getLogger("tokenswarm")

FLUSH_S = 1.0  # requests.csv is flushed at least this often
SERVER_METRICS_CSV = "server_metrics.csv"
GPU_METRICS_CSV = "gpu_metrics.csv"
WATCH_S = 0.05  # how often levels, budget, drain and workers are checked
JUDGE_S = 1.0  # how often a level's intervals are looked at (--precision, a capacity search)
#: the live count of a level's lifetimes over the report's (``window_lifetimes``), at most: the report's mean E2E
#: also holds the level's last requests, sent after the live count's judged ones and finishing under the next
#: level's load. SGLang on an H100 (2026-12-07, 16 to 1024 streams): 1.02 to 1.17, so levels the live count ended
#: at 3 lifetimes read 2.90 and 2.96 in the report. --min-lifetimes is judged on live count / this.
LIVE_LIFETIMES_OVER_REPORT = 1.2


class RunController:
    """One test's level clock, ending and live watch, driving ``load`` and writing through ``recorder``.

    ``role``: "local" or "master" (run.json); ``exporter``: tokenswarm's Prometheus metrics, when something
    can scrape them; ``dataset_counts``: a file dataset's records read, used and skipped by reason;
    ``sampler``: this process's own self-check (a single process; a master's come from its workers)."""

    def __init__(self, environment: Environment, settings: Settings, load: Load, recorder: RunRecorder, *,
                 role: str = "local", exporter: Exporter | None = None,
                 dataset_counts: dict[str, Any] | None = None, own_selfcheck: bool = False) -> None:
        self.env = environment
        self.settings = settings
        self.plan = settings.plan
        self.load = load
        self.recorder = recorder
        self.run_dir = recorder.run_dir
        self.run_id = recorder.run_id
        self.role = role
        self.headless = bool(getattr(environment.parsed_options, "headless", False))
        self.started = time.time()
        self._provenance: dict[str, Any] | None = None
        self.ended: float | None = None
        self.complete = False
        self.finished = False  # finish() has begun
        self.done = Event()  # ... and has written everything
        self._marks: tuple[dict[str, str], list[str]] | None = None  # the report's marks, once it is built
        self.taking_records = True  # until requests.csv is closed (finish() waits for the workers' last ones)
        self.interrupted = False
        self.levels = LevelTimeline()
        self.ending = Ending(time.monotonic(), settings.duration_s if self.plan is None else None)
        self.exit_reason = ""  # why the exit code is 1 (failures over --max-fail-ratio); '' otherwise
        self.level_index: int | None = None  # position in the sweep plan
        self.flags: dict[str, str] = {}  # level -> what the self-check found wrong during it (said once, live)
        self.client_checks: dict[str, dict[str, Any]] = {}  # level -> the live self-check's latest figures
        self.live_check = selfcheck.LiveCheck()
        #: the users' processes' scheduling priority {asked, got, why}; a master's workers each apply it and
        #: print what they got in their logs
        self.client_priority: dict[str, Any] = {"asked": settings.priority, "got": None,
                                                "why": "applied by each worker; its log says what it got"}
        #: --timing capture: the process's packet capture's figures at the end (segments, the kernel's drops, CPU
        #: seconds); a master's workers each print theirs in their logs
        self.client_capture: Any = None
        self._said: set[tuple[str, str]] = set()
        self._next_check = 0.0
        self.exporter = exporter
        # a timed closed loop: a level's window opens once its last user has sent (its first sends are spread)
        self.live = LiveWatch(exporter, closed_loop=settings.mode == CONCURRENCY and not settings.requests)
        self.series = Series()  # the web UI's charts over time
        self.dataset_counts = dataset_counts
        self.own_selfcheck = own_selfcheck
        self.engine_metrics: EngineMetricsSampler | None = None  # scrapes /metrics, also at each level's edges
        self.gpu_metrics: EngineMetricsSampler | None = None  # scrapes the DCGM exporter, likewise
        self._judged_at = 0.0  # when the current level's intervals were last looked at
        self._hold_since: tuple[float, float] | None = None  # a hold between probes began (epoch, monotonic s)
        #: called every watcher tick while the test sends (the load shape steps levels that end by a count)
        self.on_watch: Callable[[], None] | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self._samplers: list[Any] = []

    @property
    def timeline(self) -> list[dict[str, Any]]:
        """run.json's ``timeline``: each level's ``{"level", "start", "end"}`` (epoch s)."""
        return self.levels.segments

    @property
    def draining(self) -> bool:
        """The test stopped sending (no new requests; those in flight finish)."""
        return self.ending.draining

    @property
    def level(self) -> float | None:
        return self.levels.level

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """The test starts: its first level (the user count; a sweep's shape begins its own first level
        with :meth:`begin_level`), run.json, Locust's CSV writer, the flusher, watcher and samplers."""
        if self.plan is None:
            self.set_level(self.env.runner.target_user_count if self.env.runner else 0)
        self.write_run_json()
        self._greenlets = [self.recorder.start_locust_csvs(), gevent.spawn(self._flusher),
                           gevent.spawn(self._watcher)]
        if self.own_selfcheck:
            from tokenswarm.loadgen.selfcheck import SelfCheckSampler

            self._samplers.append(SelfCheckSampler("local", self.add_sample))
        if self.settings.server_metrics:
            self.engine_metrics = EngineMetricsSampler(
                self.settings.server_metrics, os.path.join(self.run_dir, SERVER_METRICS_CSV), lambda: self.level,
                self.settings.server_metrics_interval, self.settings.headers)
            self._samplers.append(self.engine_metrics)
        if self.settings.gpu_metrics:
            self.gpu_metrics = EngineMetricsSampler(
                self.settings.gpu_metrics, os.path.join(self.run_dir, GPU_METRICS_CSV), lambda: self.level,
                self.settings.server_metrics_interval, None, enginemetrics.GPU_FEED)
            self._samplers.append(self.gpu_metrics)
        log.info("tokenswarm run folder: %s", self.run_dir)
        if self.dataset_counts:
            self.say(f"tokenswarm: dataset {counts_line(self.dataset_counts)}")

    def say(self, line: str) -> None:
        """A line for the user: printed headless, logged in the web UI's process."""
        if self.headless:
            print(line, flush=True)
        else:
            log.warning(line)

    def _flusher(self) -> None:
        progress = self.settings.progress_interval if self.headless else 0.0
        next_progress = time.monotonic() + progress
        t0 = time.monotonic()
        while True:
            gevent.sleep(FLUSH_S)
            self.recorder.flush()
            self.live.digest()
            if self.series.due(time.monotonic()):
                self.sample()
            self._check_client()
            if progress and time.monotonic() >= next_progress:
                next_progress += progress
                print(self.progress_line(time.monotonic() - t0), flush=True)

    def progress_line(self, elapsed: float) -> str:
        if self._hold_since is not None and not self.draining:  # between two capacity probes: no level runs
            m, s = divmod(int(elapsed), 60)
            waited = time.monotonic() - self._hold_since[1]
            return (f"tokenswarm {m:02d}:{s:02d} | between probes | waiting {waited:.0f} s so far for the requests in "
                    f"flight to end | ok {self.live.totals['ok']} failed {self.live.totals['failed']}")
        index = ""
        if self.plan is not None and self.level_index is not None:
            index = (f" (probe {self.level_index + 1})" if self.plan.capacity
                     else f" ({self.level_index + 1}/{len(self.plan.levels)})")
        return self.live.progress_line(self.levels.current, self.settings.warmup_at(self.level_index),
                                       self._users(), elapsed, index)

    def _users(self) -> int:
        return int(getattr(self.env.runner, "user_count", 0) or 0)

    # -- client self-check ------------------------------------------------------------------
    def add_sample(self, sample: selfcheck.Sample) -> None:
        self.recorder.add_sample(sample)
        if self.exporter is not None:
            self.exporter.health(sample)

    def _check_client(self) -> None:
        """The live self-check of the current level (:class:`selfcheck.LiveCheck`): its timings exact within X
        ms, its load as asked; each verdict that fails is said once, with its advice."""
        seg = self.levels.current
        now = time.monotonic()
        if seg is None or now < self._next_check:
            return
        key = level_str(seg["level"])
        # after the level's warm-up, as the report: the ramp spawning users stalls no measured request
        since = seg["start"] + self.settings.warmup_at(self.level_index)
        # a closed level (between capacity probes, or draining at the end) is judged up to its end: nothing is
        # sent after it, and that is not the load falling short
        until = seg["end"] if seg.get("end") is not None else time.time()
        got = self.live_check.check(key, since, until, float(seg["level"]), self.settings.mode)
        if got is None:  # not enough yet: again at the next flush
            return
        self._next_check = now + selfcheck.LIVE_CHECK_S
        self.client_checks[key] = got
        for flag, line, advice in (("timing_uncertain", "timing", selfcheck.TIMING_ADVICE),
                                   ("load_short", "load", selfcheck.LOAD_ADVICE)):
            if got[flag] and (key, flag) not in self._said:
                self._said.add((key, flag))
                said = self.flags.get(key)
                self.flags[key] = f"{said}; {got[line]}" if said else str(got[line])
                print(f"tokenswarm: warning: level {key}: {got[line]}; {advice}", flush=True)

    # -- what the web UI shows ----------------------------------------------------------------
    def sample(self) -> None:
        """Add a point to the web UI's charts: the current level's live figures now (rows digested first)."""
        users = self._users() if not self.finished else 0
        self.series.add(self.live.sample(self.levels.current, self.settings.warmup_at(self.level_index), users,
                                         time.time()), time.monotonic())

    def chart_data(self, since: float = 0.0) -> dict[str, Any]:
        """What the web UI's charts read (/tokenswarm/series): the samples after epoch ``since``."""
        return {"run_id": self.run_id, "started": self.started, "interval_s": self.series.interval_s,
                "finished": self.finished, "samples": self.series.since(since)}

    def ui_table(self) -> list[dict[str, Any]]:
        """The tokenswarm tab's rows: one per level so far; once the report is built, each level with its marks
        (``16*``: :data:`tokenswarm.report.tables.MARKS`), as the report's tables show it."""
        self.live.digest()
        flags = dict(self.flags)
        # a sweep's timeline follows its plan, so segment i has level i's warm-up
        return self.live.table([(seg, self.settings.warmup_at(i if self.plan is not None else None))
                                for i, seg in enumerate(self.timeline)], flags, self.report_marks()[0])

    def report_marks(self) -> tuple[dict[str, str], list[str]]:
        """({level: its marks}, the legend's lines) from the report's levels.csv; empty before the report is
        built (the marks need the whole level). Read once."""
        if self._marks is None:
            if not self.done.is_set():
                return {}, []
            self._marks = ({}, [])
            path = os.path.join(self.run_dir, LEVELS_CSV)
            if os.path.exists(path):
                from tokenswarm.report import tables
                from tokenswarm.report.readers import read_levels_csv

                try:
                    levels = read_levels_csv(path)
                    self._marks = ({level_str(float(rec["level"])): tables.marks(rec)
                                    for rec in levels.to_dict("records")}, tables.legend(levels))
                except Exception as e:  # the tab keeps its figures without the marks
                    log.warning("tokenswarm: cannot read the marks of %s (%s)", path, e)
        return self._marks

    def report_file(self) -> str | None:
        """The report's HTML page once the test's report is built, else None."""
        path = os.path.join(self.run_dir, REPORT_HTML)
        return path if self.done.is_set() and os.path.exists(path) else None

    def live_figures(self) -> LiveWatch:
        """The live figures with every row received so far folded in (what /metrics serves)."""
        if not self.finished:
            self.live.digest()
        return self.live

    # -- sweeps: the load shape steps the plan (tokenswarm.loadgen.shapes) ----------------------------
    def begin_level(self, index: int, level: float) -> None:
        """The sweep's level at ``index`` of the plan begins now."""
        self.level_index = index
        assert self.plan is not None
        if self.plan.capacity:
            self.say(f"tokenswarm: capacity probe {index + 1}: level {level_str(level)}")
        else:
            log.info("tokenswarm: level %s (%d of %d)", level_str(level), index + 1, len(self.plan.levels))
        self.set_level(level)

    def finished_at(self, level: float) -> int:
        """Requests of ``level`` finished so far (cancelled ones not counted): what ``--level-requests`` counts."""
        return self.recorder.done_by_level.get(level_str(level), 0)

    def level_over(self, index: int, elapsed_s: float) -> bool:
        """Has the running level (at ``index`` of the plan, begun ``elapsed_s`` ago) done its part? Its
        ``--level-duration``/``--level-requests`` first; then, with ``--min-lifetimes N``, until its window
        holds N mean request lifetimes (:meth:`_lifetimes`); with ``--precision``, until the figures that
        matter are that precise; in a capacity search, until its intervals tell whether the SLOs hold; each
        ends at ``--max-level-duration``, the level then flagged ``imprecise`` in the timeline (a capacity
        probe takes its point estimate's verdict, ``decided`` false; a level short of its lifetimes is flagged
        by the report, ``short_window``). A capacity probe's verdict goes into its timeline segment
        (``verdict``)."""
        assert self.plan is not None
        seg = self.levels.current
        if seg is None or not self.plan.level_done(index, elapsed_s, self.finished_at(seg["level"])):
            return False
        s = self.settings
        if not s.precision_pct and not s.capacity and not s.min_lifetimes:
            return True
        now = time.monotonic()
        longest = s.max_level_duration_s
        out_of_time = longest is not None and elapsed_s >= longest
        if now - self._judged_at < JUDGE_S and not out_of_time:
            return False
        self._judged_at = now
        figures = self.live.intervals(seg, s.warmup_at(index), good=self._meets_slo)
        if s.min_lifetimes and not self._long_enough(seg, figures, elapsed_s):
            return out_of_time  # at its longest the level ends all the same: the report flags its window short
        precise = not s.precision_pct or self._precise(figures)
        if s.capacity:
            verdict = self._verdict(figures)
            if verdict != capacity.UNDECIDED and precise:
                seg.update(verdict=verdict, decided=True)
                self.say(f"tokenswarm: level {level_str(seg['level'])}: {MEETS[verdict]} the SLOs "
                         f"({figures.get('n', 0)} requests judged, {elapsed_s:.0f} s)")
                return True
            if out_of_time:
                point = {k: Interval(v.estimate, v.estimate, v.estimate) for k, v in figures.items()
                         if isinstance(v, Interval)}
                verdict = self._verdict(point)
                if verdict == capacity.UNDECIDED:  # not even an estimate (no request judged): not shown to hold
                    seg.update(verdict=capacity.FAILS, decided=False, imprecise=True)
                    self.say(f"tokenswarm: level {level_str(seg['level'])}: counted as failing the SLOs: no estimate "
                             f"of them within --max-level-duration ({figures.get('n', 0)} requests judged)")
                    return True
                seg.update(verdict=verdict, decided=False, imprecise=True)
                self.say(f"tokenswarm: level {level_str(seg['level'])}: {MEETS[verdict]} the SLOs by the estimate "
                         "alone: its intervals did not decide within --max-level-duration")
                return True
            return False
        if precise:
            return True
        if out_of_time:
            seg["imprecise"] = True
            return True
        return False

    def _lifetimes(self, figures: dict[str, Any], now: float) -> float:
        """How many mean request lifetimes (E2E) the running level's window holds if it ends at epoch ``now``, as
        the report will count them (``window_lifetimes``, :func:`tokenswarm.report.levels.lifetimes`): the live
        count, with the mean E2E of the requests the intervals judge (those sent before every one of them has
        finished, so the long ones still in flight do not leave it reading short), over
        :data:`LIVE_LIFETIMES_OVER_REPORT`. NaN before any is judged."""
        iv = figures.get("e2e_mean")
        if not figures.get("n") or not isinstance(iv, Interval):
            return math.nan
        return lifetimes(now - figures["opened"], iv.estimate) / LIVE_LIFETIMES_OVER_REPORT

    def _long_enough(self, seg: dict[str, Any], figures: dict[str, Any], elapsed_s: float) -> bool:
        """The level's window holds ``--min-lifetimes`` mean request lifetimes, or none of its judged requests
        was ok (no lifetime to count: running on would only add failures); says once per level that it runs on
        past its ``--level-duration`` for them."""
        held = self._lifetimes(figures, time.time())
        none_ok = bool(figures.get("n")) and math.isnan(held)
        if held >= self.settings.min_lifetimes or none_ok:
            return True
        if not seg.get("lengthened"):
            seg["lengthened"] = True
            so_far = f"{held:.1f} so far" if math.isfinite(held) else "none judged yet"
            self.say(f"tokenswarm: level {level_str(seg['level'])} runs on after {elapsed_s:.0f} s until its window "
                     f"holds {self.settings.min_lifetimes:g} request lifetimes ({so_far})")
        return False

    def _targets(self) -> tuple[dict[str, float], dict[str, float]]:
        """(per-request SLO limits, SLO targets on a level's figures), ms."""
        slo = self.settings.slo
        return {k: v for k, v in slo.items() if k in SLO_KEYS}, {k: v for k, v in slo.items() if k not in SLO_KEYS}

    def _meets_slo(self, sample: Any) -> Any:
        """Per request of a live sample (:data:`tokenswarm.report.live.S`): 1.0 when ok and within every
        per-request limit, 0.0 when not, NaN when unjudged (an ok request without the TPOT a TPOT limit needs
        neither meets nor misses it, as in the report: :func:`tokenswarm.report.levels.slo_masks`)."""
        import numpy as np

        limits, _ = self._targets()
        ok = sample[:, SAMPLE["ok"]] > 0
        good = ok.copy()
        unjudged = np.zeros(len(sample), dtype=bool)
        for key, limit in limits.items():
            col = sample[:, SAMPLE[key]]
            with np.errstate(invalid="ignore"):
                good &= col <= limit
            if key == "tpot":
                unjudged |= ok & np.isnan(col)
        out = good.astype(float)
        out[unjudged] = np.nan
        return out

    def _precise(self, figures: dict[str, Any]) -> bool:
        """The figures that matter (the SLO's, else output throughput and TTFT p99) are within --precision."""
        limits, targets = self._targets()
        keys = list(targets) + (["slo_attainment_pct"] if limits else [])
        keys = keys or ["output_tok_s", "ttft_p99"]
        pct = self.settings.precision_pct / 100.0
        for key in keys:
            iv = figures.get(key)
            rel = iv.relative_half_width() if isinstance(iv, Interval) else float("nan")
            if not rel <= pct:
                return False
        return True

    def _verdict(self, figures: dict[str, Any]) -> str:
        limits, targets = self._targets()
        named = {k: figures[k] for k in targets if isinstance(figures.get(k), Interval)}
        if limits and isinstance(figures.get("slo_attainment_pct"), Interval):
            named["slo_attainment"] = figures["slo_attainment_pct"]
        seg = self.levels.current
        failed = self.live.failed(seg["level"]) if seg is not None else 0
        return judge(named, targets, self.settings.slo_attainment if limits else None, failed)

    def hold(self) -> None:
        """A capacity search steps down from a failing rate probe: its window ends now and no new request is
        sent until those in flight have ended (:meth:`hold_over`), so the lower probe does not inherit the
        failing one's queue. (An open loop keeps sending while the server is behind: without the hold, the
        lower probe's first requests waited behind that backlog, and a rate the engine serves could fail.)"""
        self.stopping()
        self._hold_since = (time.time(), time.monotonic())
        self.load.announce(0, self._hold_since[0])
        self.say("tokenswarm: no new requests until those in flight have ended: the next, lower probe must "
                 "not inherit this one's queue")

    def hold_over(self) -> bool:
        """The hold (:meth:`hold`) may end: every request in flight has ended, or it has lasted
        ``--max-level-duration`` (else ``--read-timeout``): requests still in flight then stay, said once."""
        if self._hold_since is None:
            return True
        since, began = self._hold_since
        if self.load.idle(since):
            self._hold_since = None
            log.info("tokenswarm: requests in flight ended after %.1f s; the next probe begins",
                     time.monotonic() - began)
            return True
        longest = self.settings.max_level_duration_s or self.settings.read_timeout
        if time.monotonic() - began >= longest:
            self._hold_since = None
            self.say(f"tokenswarm: requests still in flight after {longest:g} s of waiting; the next probe "
                     "begins beside them")
            return True
        return False

    def end_of_levels(self) -> None:
        """The sweep's last level is done: no new requests; those in flight finish, then the test stops."""
        log.info("tokenswarm: last level done; waiting for requests in flight")
        self.stopping()
        self._drain("levels")

    # -- levels ----------------------------------------------------------------------------
    def set_level(self, level: float, t: float | None = None) -> None:
        """Start a new level now (or at epoch ``t``): closes the previous one, tells the load."""
        t = time.time() if t is None else t
        before = self.levels.current
        seg = self.levels.begin(level, t)
        if before is not None and level < before["level"]:
            # a step down: the level's window opens once the requests sent before it have ended (they still
            # hold the server); the live figures know it when this many records of earlier levels are in
            seg["sent_before"] = self.load.sent()
        self.load.announce(level, seg["start"])  # one clock for every worker: the master's
        for sampler in (self.engine_metrics, self.gpu_metrics):
            if sampler is not None:
                sampler.mark(level, t)

    def stopping(self) -> None:
        """Load stops now: the last level's window ends (in-flight requests still finish)."""
        t = time.time()
        if self.levels.close(t):
            for sampler in (self.engine_metrics, self.gpu_metrics):
                if sampler is not None:
                    sampler.mark(None, t)

    # -- ending ----------------------------------------------------------------------------
    def _drain(self, why: str) -> None:
        if self.ending.drain(time.monotonic(), why):
            self.load.stop_sending()

    def _watcher(self) -> None:
        """Follow the target user count (levels, when no sweep drives them) and the load's workers, and end
        the test when its duration or request budget is used up: no new requests, those in flight finish (up
        to --stop-timeout), then stop (:class:`~tokenswarm.loadgen.timeline.Ending` decides when)."""
        runner = self.env.runner
        while True:
            gevent.sleep(WATCH_S)
            if runner is None:
                continue
            self.load.poll()
            if self.on_watch is not None and not self.draining:
                try:
                    self.on_watch()
                except Exception:  # Locust's tick (once a second) still steps the levels; the end must not stop
                    log.exception("tokenswarm: stepping the levels from the watcher failed; left to Locust's tick")
                    self.on_watch = None
            if self.plan is None and self.levels.running:
                target = runner.target_user_count
                if target != self.levels.level:
                    self.set_level(target)
            now = time.monotonic()
            why = self.ending.should_drain(now, bool(self.settings.requests) and self.load.budget_spent())
            if why is not None:
                if why == DURATION:
                    log.info("tokenswarm: duration reached; waiting for requests in flight")
                self.stopping()  # the measurement window ends here
                self._drain(why)
                continue
            end = self.ending.should_stop(now, self.load.drained(), self.env.stop_timeout or 0.0)
            if end is not None:
                cut = end == TIMED_OUT
                if cut:
                    log.warning("tokenswarm: requests still in flight after --stop-timeout %gs; cancelling them "
                                "(recorded as cancelled)", self.env.stop_timeout)
                self.stopping()
                gevent.spawn(self._end, cut)
                return

    def _end(self, cut: bool) -> None:
        """Stop the test. Requests still in flight (``cut``) are cancelled and recorded first: every user is
        stopped at once and the workers ship those records before they report stopped, which the master's
        stop waits for. (Locust's quit alone fires the master's test end before the workers' last records
        arrive, and they would be lost.)"""
        runner = self.env.runner
        if runner is None:
            return
        if cut:
            self.load.abort()  # the workers' own stop then cancels at once too
            workarounds.stop_now(self.env)
        if self.headless:
            runner.quit()
        elif not cut:
            runner.stop()

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: the run is incomplete; requests in flight are cancelled at the stop."""
        log.warning("tokenswarm: interrupted; writing what was measured (Ctrl-C again to exit at once)")
        self.interrupted = True
        workarounds.cancel_at_stop(self.env)
        self.load.abort()

    # -- records -------------------------------------------------------------------------
    def add_rows(self, rows: list[Row]) -> None:
        """Finished requests' rows (this process's users', or a worker's batch): written and watched."""
        self.recorder.add_rows(rows)
        self.live.add(rows)
        self.live_check.add(rows)

    # -- end -----------------------------------------------------------------------------
    def finish(self, complete: bool = True) -> None:
        """Flush and close everything, write run.json and the report. Safe to call twice."""
        if self.finished:
            return
        self.finished = True
        self.stopping()
        self.load.await_final_records()
        self.ended = time.time()
        self.complete = complete and not self.interrupted
        for g in self._greenlets:
            g.kill(block=True)
        self.load.close()
        for sampler in self._samplers:
            sampler.stop()
        self._check_client()
        self.live.digest()
        self.sample()  # the charts end where the test ended
        self.taking_records = False
        self.recorder.close()
        if self.exporter is not None:  # the last word: a scrape sees the final totals before the process ends
            self.exporter.await_final_scrape()
        self.exit_reason = failures_message(self.recorder.status_by_level, self.settings.max_fail_ratio,
                                            self.load.lost_in_flight,
                                            "rate" if self.settings.mode == "rate" else "level")
        self.write_run_json()
        try:
            from tokenswarm.report import build_report, summary_text

            build_report(self.run_dir)
            table = summary_text(self.run_dir)
        except Exception as e:  # the raw files are written; a report can be rebuilt later
            log.error("tokenswarm: could not build the report (%s); run `tokenswarm report %s`", e, self.run_dir)
            table = ""
        if table and not os.environ.get("TOKENSWARM_CLI"):  # `tokenswarm run` prints it last itself
            print("\n" + table, flush=True)
        if self.exit_reason and self.complete and not os.environ.get("TOKENSWARM_CLI"):
            print(f"tokenswarm: {self.exit_reason}", file=sys.stderr, flush=True)
        print(self.recorder.counts_line(len(self.load.lost_workers()), self.load.lost_in_flight), flush=True)
        self.done.set()

    def wait_done(self, timeout: float = 300.0) -> None:
        """Block (this greenlet) until finish() has written everything: shutdown must not outrun it."""
        if self.finished:
            self.done.wait(timeout)

    def failure_ratio(self) -> float:
        """Failed share of finished requests; requests lost with a worker count as failed."""
        return failure_ratio({"": self.recorder.status_counts}, self.load.lost_in_flight)

    def exit_code(self) -> int:
        if not self.complete:
            return ExitStatus.INTERRUPTED
        if self.failure_ratio() > self.settings.max_fail_ratio:
            return ExitStatus.FAILURES
        return ExitStatus.OK

    def provenance(self) -> dict[str, Any]:
        """run.json's ``provenance`` (:mod:`tokenswarm.provenance`): what the command line and the preflight
        recorded, dated at the test's start; a run started otherwise (``locust -f``, the web UI) records this
        process's command line."""
        if self._provenance is None:  # once; its date is the test's start
            known = self.settings.provenance
            if not known.get("command"):
                known = {**provenance.start(sys.argv[1:], self.settings.headers.values(), program="locust"),
                         **known}
            self._provenance = {**known, "date": provenance.utc_iso(self.started)}
        return self._provenance

    def write_run_json(self) -> None:
        opts = self.env.parsed_options
        counts = self.dataset_counts
        self.recorder.write_run_json({
            "complete": self.complete,
            "mode": self.settings.mode,
            "started": self.started,
            "ended": self.ended,
            "settings": self.settings.public(),
            "provenance": self.provenance(),
            "locust": {
                "role": self.role,
                "expect_workers": getattr(opts, "expect_workers", None) if self.role == "master" else None,
            },
            "timeline": self.timeline,
            "workers": self.load.workers(self.recorder.rows),
            "lost_workers": self.load.lost_workers(),
            "dataset_counts": {k: counts.get(k) for k in ("dataset", "path", "records", "usable", "skipped")}
            if counts else None,
            "exit_reason": self.exit_reason or None,
            "client_checks": self.client_checks,
            "client_priority": self.client_priority,
            "client_capture": self.client_capture() if callable(self.client_capture) else None,
        })
