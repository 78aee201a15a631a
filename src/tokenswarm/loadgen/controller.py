"""The writing side of a test, on the master or the single local process.

A :class:`RunController` owns the run folder from test start to test stop:
it creates ``reports/<run_id>/``, appends rows to requests.csv (its own
users' rows, or batches shipped by workers) and flushes them every second,
keeps the level timeline (a sweep's shape says when each level begins), ends the test
cleanly (no new requests, those in flight finish), writes Locust's CSV files
and run.json, and at the end builds the report and sets the exit code. It is
the only writer of a run folder.
"""

from __future__ import annotations

import csv
import logging
import os
import platform
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import gevent
import locust
from gevent.event import Event
from locust import stats as locust_stats

from tokenswarm import __version__, health, runfolder
from tokenswarm.datasets.files import books_line
from tokenswarm.exitstatus import ExitStatus, failure_ratio, failures_message
from tokenswarm.loadgen import workarounds
from tokenswarm.loadgen.cluster import MSG_ABORT, MSG_LEVEL, MasterBooks
from tokenswarm.loadgen.enginescrape import EngineMetricsSampler
from tokenswarm.loadgen.livebooks import LiveBooks, Series
from tokenswarm.loadgen.selfcheck import HealthSampler
from tokenswarm.loadgen.timeline import DURATION, TIMED_OUT, Ending, LevelTimeline
from tokenswarm.records import LEVEL_COL, STATUS_COL, RequestsWriter, Row
from tokenswarm.settings import Settings
from tokenswarm.sweep import level_str

if TYPE_CHECKING:
    from locust.env import Environment

    from tokenswarm.loadgen.exporter import Exporter
    from tokenswarm.loadgen.session import Session

log = logging.getLogger("tokenswarm")

FLUSH_S = 1.0  # requests.csv is flushed at least this often
HEALTH_CSV = "client_health.csv"
SERVER_METRICS_CSV = "server_metrics.csv"
WATCH_S = 0.05  # how often levels, budget, drain and workers are checked
FINAL_RECORDS_WAIT_S = 10.0  # how long a stopping master waits for each worker's last records


class RunController:
    """One test's run folder and books, on the master or the local runner."""

    def __init__(self, environment: Environment, settings: Settings, run_dir: str, *,
                 session: Session | None = None, books: MasterBooks | None = None, exporter: Exporter | None = None,
                 dataset_books: dict[str, Any] | None = None) -> None:
        """``session``: the local process's own users (their rows come through :meth:`add_rows`); ``books``:
        a master's books of its workers (their rows come through :meth:`on_worker_rows`); ``exporter``:
        tokenswarm's Prometheus metrics, when something can scrape them; ``dataset_books``: a file dataset's
        records read, used and skipped by reason."""
        self.env = environment
        self.settings = settings
        self.plan = settings.plan
        self.run_dir = run_dir
        self.run_id = os.path.basename(os.path.normpath(run_dir))
        self.writer = RequestsWriter(os.path.join(run_dir, runfolder.REQUESTS_CSV))
        self.levels = LevelTimeline()
        self.timeline = self.levels.segments  # run.json's "timeline"
        self.session = session
        self.books = books
        self.is_master = books is not None
        self.headless = bool(getattr(environment.parsed_options, "headless", False))
        self.started = time.time()
        self.ended: float | None = None
        self.complete = False
        self.finished = False  # finish() has begun
        self.done = Event()  # ... and has written everything
        self.interrupted = False
        self.ending = Ending(time.monotonic(), settings.duration_s if self.plan is None else None)
        self.status_counts: dict[str, int] = {}
        self.status_by_level: dict[str, dict[str, int]] = {}  # level -> status -> requests
        self.exit_reason = ""  # why the exit code is 1 (failures over --max-fail-ratio); '' otherwise
        self.done_by_level: dict[str, int] = {}  # finished (not cancelled) requests per level
        self.level_index: int | None = None  # position in the sweep plan
        self._workers_seen = 0
        self._greenlets: list[gevent.Greenlet] = []
        self._csv: locust_stats.StatsCSVFileWriter | None = None
        self.exporter = exporter
        self.live = LiveBooks(self.exporter)
        self.series = Series()  # the web UI's charts over time
        self.health: list[health.Sample] = []
        self._health_fh = open(os.path.join(run_dir, HEALTH_CSV), "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._health_w = csv.writer(self._health_fh)
        self._health_w.writerow(health.CSV_COLUMNS)
        self.flags: dict[str, str] = {}  # level -> why the client was saturated during it
        self._samplers: list[Any] = []
        self.dataset_books = dataset_books
        self.engine_metrics: EngineMetricsSampler | None = None  # scrapes /metrics, also at each level's edges

    @property
    def draining(self) -> bool:
        """The test stopped sending (no new requests; those in flight finish)."""
        return self.ending.draining

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """The test starts: its first level (the user count; a sweep's shape begins its own first level
        with :meth:`begin_level`), run.json, Locust's CSV writer, the flusher, watcher and samplers."""
        if self.plan is None:
            self.set_level(self.env.runner.target_user_count if self.env.runner else 0)
        self.write_run_json()
        self._csv = locust_stats.StatsCSVFileWriter(
            self.env, locust_stats.PERCENTILES_TO_REPORT, os.path.join(self.run_dir, runfolder.LOCUST_PREFIX),
            full_history=True,
        )
        self._greenlets = [gevent.spawn(self._csv.stats_writer), gevent.spawn(self._flusher),
                           gevent.spawn(self._watcher)]
        if self.session is not None:
            self._samplers.append(HealthSampler("local", self.add_health))
        if self.settings.server_metrics:
            self.engine_metrics = EngineMetricsSampler(
                self.settings.server_metrics, os.path.join(self.run_dir, SERVER_METRICS_CSV), lambda: self.level,
                self.settings.server_metrics_interval, self.settings.headers)
            self._samplers.append(self.engine_metrics)
        log.info("tokenswarm run folder: %s", self.run_dir)
        if self.dataset_books:
            line = f"tokenswarm: dataset {books_line(self.dataset_books)}"
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
            self.writer.flush()
            self.live.digest()
            if self.series.due(time.monotonic()):
                self.sample()
            self._health_fh.flush()
            self._check_client()
            if progress and time.monotonic() >= next_progress:
                next_progress += progress
                print(self.progress_line(time.monotonic() - t0), flush=True)

    def progress_line(self, elapsed: float) -> str:
        runner = self.env.runner
        index = ""
        if self.plan is not None and self.level_index is not None:
            index = f" ({self.level_index + 1}/{len(self.plan.levels)})"
        seg = self.timeline[-1] if self.timeline else None
        return self.live.progress_line(seg, self.settings.warmup_at(self.level_index),
                                       int(getattr(runner, "user_count", 0) or 0), elapsed, index)

    # -- client self-check ------------------------------------------------------------------
    def add_health(self, sample: health.Sample) -> None:
        self.health.append(sample)
        self._health_w.writerow(sample.row())
        if self.exporter is not None:
            self.exporter.health(sample)

    def _check_client(self) -> None:
        """Flag the current level when a load generator is saturated (and say so once, live)."""
        if not self.timeline:
            return
        seg = self.timeline[-1]
        key = level_str(seg["level"])
        if key in self.flags:
            return
        # after the level's warm-up, as the report: the ramp spawning users stalls no measured request
        since = seg["start"] + self.settings.warmup_at(self.level_index)
        bad, why = health.verdict([h for h in self.health if h.time >= since])
        if bad:
            self.flags[key] = why
            print(f"tokenswarm: warning: the load generator is saturated at level {key} ({why}): its timings "
                  f"include client delay; {health.ADVICE}", flush=True)

    def sample(self) -> None:
        """Add a point to the web UI's charts: the current level's live figures now (rows digested first)."""
        seg = self.timeline[-1] if self.timeline else None
        users = int(getattr(self.env.runner, "user_count", 0) or 0) if not self.finished else 0
        self.series.add(self.live.sample(seg, self.settings.warmup_at(self.level_index), users, time.time()),
                        time.monotonic())

    def chart_data(self, since: float = 0.0) -> dict[str, Any]:
        """What the web UI's charts read (/tokenswarm/series): the samples after epoch ``since``."""
        return {"run_id": self.run_id, "started": self.started, "interval_s": self.series.interval_s,
                "finished": self.finished, "samples": self.series.since(since)}

    def ui_table(self) -> list[dict[str, Any]]:
        self.live.digest()
        flags = {k: "SATURATED: " + v for k, v in self.flags.items()}
        # a sweep's timeline follows its plan, so segment i has level i's warm-up
        return self.live.table([(seg, self.settings.warmup_at(i if self.plan is not None else None))
                                for i, seg in enumerate(self.timeline)], flags)

    # -- sweeps: the load shape steps the plan (tokenswarm.loadgen.shapes) ----------------------------
    def begin_level(self, index: int, level: float) -> None:
        """The sweep's level at ``index`` of the plan begins now."""
        self.level_index = index
        assert self.plan is not None
        log.info("tokenswarm: level %s (%d of %d)", level_str(level), index + 1, len(self.plan.levels))
        self.set_level(level)

    def finished_at(self, level: float) -> int:
        """Requests of ``level`` finished so far (cancelled ones not counted): what ``--level-requests`` counts."""
        return self.done_by_level.get(level_str(level), 0)

    def end_of_levels(self) -> None:
        """The sweep's last level is done: no new requests; those in flight finish, then the test stops."""
        log.info("tokenswarm: last level done; waiting for requests in flight")
        self.stopping()
        self._drain("levels")

    # -- levels ----------------------------------------------------------------------------
    def set_level(self, level: float, t: float | None = None) -> None:
        """Start a new level now (or at epoch ``t``): closes the previous one, tells workers and users."""
        t = time.time() if t is None else t
        self.levels.begin(level, t)
        self._announce(level)
        if self.engine_metrics is not None:
            self.engine_metrics.mark(level, t)

    def _announce(self, level: float) -> None:
        seg = self.levels.current
        start = seg["start"] if seg is not None else time.time()  # one clock for every worker
        if self.session is not None:
            self.session.set_level(level, start=start)
        if self.books is not None:
            workers = max(len(self.books.alive()), 1)
            self._workers_seen = workers
            self.env.runner.send_message(MSG_LEVEL, {"level": level, "workers": workers, "start": start})

    @property
    def level(self) -> float | None:
        return self.levels.level

    def stopping(self) -> None:
        """Load stops now: the last level's window ends (in-flight requests still finish)."""
        t = time.time()
        if self.levels.close(t) and self.engine_metrics is not None:
            self.engine_metrics.mark(None, t)

    # -- ending ----------------------------------------------------------------------------
    def _drain(self, why: str) -> None:
        if not self.ending.drain(time.monotonic(), why):
            return
        if self.session is not None:
            self.session.stop_sending()
        if self.books is not None:
            self.books.start_drain()

    def in_flight(self) -> int:
        return self.session.in_flight if self.session is not None else 0

    def _drained(self) -> bool:
        if self.books is not None:
            return self.books.all_drained()
        return self.in_flight() == 0

    def _budget_spent(self) -> bool:
        """--requests: every ticket was handed out and has turned into a record (or was lost with a worker)."""
        if self.books is not None:
            b = self.books
            if b.remaining > 0:
                return False
            return all(w["records"] >= w["leased"] for cid, w in b.workers.items() if cid in b.alive())
        s = self.session
        return s is not None and s.exhausted and s.in_flight == 0

    def _watcher(self) -> None:
        """Follow the target user count (levels, when no sweep drives them), worker losses, and end the test
        when its duration or request budget is used up: no new requests, those in flight finish (up to
        --stop-timeout), then stop (:class:`~tokenswarm.loadgen.timeline.Ending` decides when)."""
        runner = self.env.runner
        while True:
            gevent.sleep(WATCH_S)
            if runner is None:
                continue
            if self.books is not None:
                if self.books.check_lost() and self.level is not None:
                    self._announce(self.level)  # rate mode: the others take over the lost worker's share
                elif len(self.books.alive()) != self._workers_seen and self.level is not None:
                    self._announce(self.level)
            if self.plan is None and self.levels.running:
                target = runner.target_user_count
                if target != self.levels.level:
                    self.set_level(target)
            now = time.monotonic()
            why = self.ending.should_drain(now, bool(self.settings.requests) and self._budget_spent())
            if why is not None:
                if why == DURATION:
                    log.info("tokenswarm: duration reached; waiting for requests in flight")
                self.stopping()  # the measurement window ends here
                self._drain(why)
                continue
            end = self.ending.should_stop(now, self._drained(), self.env.stop_timeout or 0.0)
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
            stop_timeout, self.env.stop_timeout = self.env.stop_timeout, 0
            if self.books is not None:
                runner.send_message(MSG_ABORT, {})  # the workers' own stop then cancels at once too
            runner.stop()
            self.env.stop_timeout = stop_timeout
        if self.headless:
            runner.quit()
        elif not cut:
            runner.stop()

    # -- records -------------------------------------------------------------------------
    def add_rows(self, rows: list[Row]) -> None:
        self.writer.write(rows)
        self.live.add(rows)
        counts = self.status_counts
        done = self.done_by_level
        by_level = self.status_by_level
        for row in rows:
            st = row[STATUS_COL]
            counts[st] = counts.get(st, 0) + 1
            mine = by_level.get(row[LEVEL_COL])
            if mine is None:
                mine = by_level[row[LEVEL_COL]] = {}
            mine[st] = mine.get(st, 0) + 1
            if st != "cancelled":
                done[row[LEVEL_COL]] = done.get(row[LEVEL_COL], 0) + 1

    def on_worker_rows(self, client_id: str, data: dict[str, Any]) -> None:
        if self.books is not None:
            self.books.on_records(client_id, data)
        for h in data.get("health", ()):
            self.add_health(health.Sample(*h))
        if data["rows"]:
            self.add_rows(data["rows"])

    # -- end -----------------------------------------------------------------------------
    def _await_worker_records(self) -> None:
        """On a master: the workers' last records (requests cancelled at the stop) before anything is written.
        Not from one of the runner's own greenlets, which receive those records."""
        runner = self.env.runner
        if self.books is None or runner is None:
            return
        if workarounds.in_runner_greenlet(runner):
            return
        self.books.wait_records(FINAL_RECORDS_WAIT_S)

    def finish(self, complete: bool = True) -> None:
        """Flush and close everything, write run.json and the report. Safe to call twice."""
        if self.finished:
            return
        self.finished = True
        self.stopping()
        self._await_worker_records()
        self.ended = time.time()
        self.complete = complete and not self.interrupted
        for g in self._greenlets:
            g.kill(block=True)
        if self.session is not None:
            self.session.close()
        for sampler in self._samplers:
            sampler.stop()
        self._check_client()
        self._health_fh.close()
        self.live.digest()
        self.sample()  # the charts end where the test ended
        if self.books is not None:
            self.books.check_lost()
        self._final_locust_csvs()
        self.writer.close()
        lost = self.books.lost_in_flight if self.books is not None else 0
        self.exit_reason = failures_message(self.status_by_level, self.settings.max_fail_ratio, lost,
                                            "rate" if self.settings.mode == "rate" else "level")
        self.write_run_json()
        try:
            from tokenswarm.report import build, summary_text

            build(self.run_dir)
            table = summary_text(self.run_dir)
        except Exception as e:  # the raw files are written; a report can be rebuilt later
            log.error("tokenswarm: could not build the report (%s); run `tokenswarm report %s`", e, self.run_dir)
            table = ""
        if table and not os.environ.get("TOKENSWARM_CLI"):  # `tokenswarm run` prints it last itself
            print("\n" + table, flush=True)
        if self.exit_reason and self.complete and not os.environ.get("TOKENSWARM_CLI"):
            print(f"tokenswarm: {self.exit_reason}", file=sys.stderr, flush=True)
        self._print_books()
        self.done.set()

    def wait_done(self, timeout: float = 300.0) -> None:
        """Block (this greenlet) until finish() has written everything: shutdown must not outrun it."""
        if self.finished:
            self.done.wait(timeout)

    def _final_locust_csvs(self) -> None:
        if self._csv is None:
            return
        csv_writer = self._csv
        workarounds.write_last_history_row(csv_writer, time.time())
        csv_writer.close_files()
        base = os.path.join(self.run_dir, runfolder.LOCUST_PREFIX)
        for suffix, fn in (("_stats.csv", csv_writer.requests_csv), ("_failures.csv", csv_writer.failures_csv),
                           ("_exceptions.csv", csv_writer.exceptions_csv)):
            with open(base + suffix, "w", newline="", encoding="utf-8") as fh:
                fn(csv.writer(fh))
        self._csv = None

    def _print_books(self) -> None:
        c = self.status_counts
        total = sum(c.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        lost = ""
        if self.books is not None and self.books.lost:
            lost = (f"; {len(self.books.lost)} worker(s) lost with {self.books.lost_in_flight} requests in flight "
                    "(see run.json)")
        print(f"tokenswarm: {total} requests ({parts or 'none'}){lost}; run folder {self.run_dir}", flush=True)

    def failure_ratio(self) -> float:
        """Failed share of finished requests; requests lost with a worker count as failed."""
        lost = self.books.lost_in_flight if self.books is not None else 0
        return failure_ratio({"": self.status_counts}, lost)

    def exit_code(self) -> int:
        if not self.complete:
            return ExitStatus.INTERRUPTED
        if self.failure_ratio() > self.settings.max_fail_ratio:
            return ExitStatus.FAILURES
        return ExitStatus.OK

    def write_run_json(self) -> None:
        opts = self.env.parsed_options
        runner = self.env.runner
        if self.books is not None:
            workers = self.books.public()
        elif self.session is not None:
            workers = [{"id": "local", "host": socket.gethostname(), "pid": os.getpid(), "records": self.writer.rows,
                        "sent": self.session.sent_started}]
        else:
            workers = []
        data = {
            "run_id": self.run_id,
            "complete": self.complete,
            "mode": self.settings.mode,
            "started": self.started,
            "ended": self.ended,
            "settings": self.settings.public(),
            "locust": {
                "users": getattr(opts, "num_users", None),
                "spawn_rate": getattr(opts, "spawn_rate", None),
                "stop_timeout": self.env.stop_timeout,
                "headless": self.headless,
                "role": "master" if self.is_master else "local",
                "expect_workers": getattr(opts, "expect_workers", None) if self.is_master else None,
            },
            "timeline": self.timeline,
            "workers": workers,
            "lost_workers": [{"id": w["id"], "lost_at": w["lost_at"], "records": w["records"],
                              "lost_in_flight": w.get("lost_in_flight", 0)} for w in self.books.lost]
            if self.books is not None else [],
            "records": self.writer.rows,
            "status_counts": self.status_counts,
            "dataset_books": {k: self.dataset_books.get(k) for k in ("dataset", "path", "records", "usable", "skipped")}
            if self.dataset_books else None,
            "exit_reason": self.exit_reason or None,
            "client_saturated": self.flags,
            "versions": {"tokenswarm": __version__, "locust": locust.__version__, "python": sys.version.split()[0]},
            "host": {"name": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "runner_state": getattr(runner, "state", None),
        }
        runfolder.write_json(os.path.join(self.run_dir, runfolder.RUN_JSON), data)
