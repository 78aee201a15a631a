"""The writing side of a test, on the master or the single local process.

A :class:`RunController` owns the run folder from test start to test stop:
it checks the target (preflight), creates ``reports/<run_id>/``, appends
rows to requests.csv (its own users' rows, or batches shipped by workers)
and flushes them every second, keeps the level timeline, writes Locust's CSV
files and run.json, and at the end builds the report and sets the exit code.
It is the only writer of a run folder.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import gevent
import locust
from locust import stats as locust_stats
from locust.runners import MasterRunner

from tokenswarm import __version__, runfolder
from tokenswarm.exitstatus import ExitStatus
from tokenswarm.records import RequestsWriter, Row
from tokenswarm.settings import Settings

if TYPE_CHECKING:
    from locust.env import Environment

    from tokenswarm.loadgen.session import Session

log = logging.getLogger("tokenswarm")

FLUSH_S = 1.0  # requests.csv is flushed at least this often
WATCH_S = 0.05  # how often the level and the request budget are checked



class RunController:
    """One test's run folder and books, on the master or the local runner."""

    def __init__(self, environment: Environment, settings: Settings, run_dir: str) -> None:
        self.env = environment
        self.settings = settings
        self.run_dir = run_dir
        self.run_id = os.path.basename(os.path.normpath(run_dir))
        self.writer = RequestsWriter(os.path.join(run_dir, runfolder.REQUESTS_CSV))
        self.timeline: list[dict[str, Any]] = []
        self.workers: dict[str, dict[str, Any]] = {}
        self.session: Session | None = None  # the local runner's own users
        self.started = time.time()
        self.ended: float | None = None
        self.complete = False
        self.finished = False
        self.interrupted = False
        self.draining = False
        self.status_counts: dict[str, int] = {}
        self._greenlets: list[gevent.Greenlet] = []
        self._csv: locust_stats.StatsCSVFileWriter | None = None
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.headless = bool(getattr(environment.parsed_options, "headless", False))

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        self.set_level(self.env.runner.target_user_count if self.env.runner else 0)
        self.write_run_json()
        self._csv = locust_stats.StatsCSVFileWriter(
            self.env, locust_stats.PERCENTILES_TO_REPORT, os.path.join(self.run_dir, runfolder.LOCUST_PREFIX),
            full_history=True,
        )
        self._greenlets = [gevent.spawn(self._csv.stats_writer), gevent.spawn(self._flusher),
                           gevent.spawn(self._watcher)]
        log.info("tokenswarm run folder: %s", self.run_dir)

    def _flusher(self) -> None:
        while True:
            gevent.sleep(FLUSH_S)
            self.writer.flush()

    def _watcher(self) -> None:
        """Follow the target user count (levels) and end the test when its duration or request budget
        is used up: no new requests, those in flight finish (up to --stop-timeout), then stop."""
        runner = self.env.runner
        duration = self.settings.duration_s
        deadline = time.monotonic() + duration if duration else None
        drain_since = 0.0
        while True:
            gevent.sleep(WATCH_S)
            if runner is None:
                continue
            target = runner.target_user_count
            if self.timeline and target != self.timeline[-1]["level"] and not self.timeline[-1].get("end"):
                self.set_level(target)
            now = time.monotonic()
            s = self.session
            if not self.draining:
                if deadline is not None and now >= deadline:
                    log.info("tokenswarm: duration reached; waiting for requests in flight")
                    self.stopping()  # the measurement window ends here
                    self._drain(now)
                elif s is not None and s.exhausted:
                    log.info("tokenswarm: all %d requests sent; waiting for requests in flight", self.settings.requests)
                    self._drain(now)
                drain_since = now
                continue
            if self.in_flight() == 0 or now - drain_since > self.env.stop_timeout:
                self.stopping()
                gevent.spawn(runner.quit if self.headless else runner.stop)
                return

    def _drain(self, now: float) -> None:
        self.draining = True
        if self.session is not None:
            self.session.draining = True

    def in_flight(self) -> int:
        return self.session.in_flight if self.session is not None else 0

    # -- levels --------------------------------------------------------------------------
    def set_level(self, level: int, t: float | None = None) -> None:
        """Start a new level now (or at epoch ``t``): closes the previous one, tells workers and users."""
        t = time.time() if t is None else t
        if self.timeline and self.timeline[-1].get("end") is None:
            self.timeline[-1]["end"] = t
        self.timeline.append({"level": level, "start": t, "end": None})
        if self.session is not None:
            self.session.level = level
        if self.is_master:
            self.env.runner.send_message("tokenswarm_level", {"level": level})

    def stopping(self) -> None:
        """Load stops now: the last level's window ends (in-flight requests still finish)."""
        if self.timeline and self.timeline[-1].get("end") is None:
            self.timeline[-1]["end"] = time.time()

    # -- records -------------------------------------------------------------------------
    def add_rows(self, rows: list[Row]) -> None:
        self.writer.write(rows)
        counts = self.status_counts
        for row in rows:
            st = row[5]
            counts[st] = counts.get(st, 0) + 1

    def on_worker_rows(self, data: dict[str, Any]) -> None:
        info = self.workers.setdefault(data["worker"], {"id": data["worker"], "host": data.get("host"),
                                                         "pid": data.get("pid"), "records": 0})
        info["records"] += len(data["rows"])
        info["last_seen"] = time.time()
        self.add_rows(data["rows"])

    # -- end -----------------------------------------------------------------------------
    def finish(self, complete: bool = True) -> None:
        """Flush and close everything, write run.json and the report. Safe to call twice."""
        if self.finished:
            return
        self.finished = True
        self.stopping()
        self.ended = time.time()
        self.complete = complete and not self.interrupted
        for g in self._greenlets:
            g.kill(block=True)
        self._final_locust_csvs()
        self.writer.close()
        if self.session is not None:
            self.workers.setdefault("local", {"id": "local", "host": socket.gethostname(), "pid": os.getpid(),
                                              "records": self.writer.rows})
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
        self._print_books()

    def _final_locust_csvs(self) -> None:
        if self._csv is None:
            return
        csv_writer = self._csv
        try:
            csv_writer._stats_history_data_rows(csv_writer.stats_history_csv_writer, time.time())
        except Exception:  # a private Locust helper: the history simply lacks its last row
            pass
        csv_writer.close_files()
        base = os.path.join(self.run_dir, runfolder.LOCUST_PREFIX)
        import csv

        for suffix, fn in (("_stats.csv", csv_writer.requests_csv), ("_failures.csv", csv_writer.failures_csv),
                           ("_exceptions.csv", csv_writer.exceptions_csv)):
            with open(base + suffix, "w", newline="", encoding="utf-8") as fh:
                fn(csv.writer(fh))
        self._csv = None

    def _print_books(self) -> None:
        c = self.status_counts
        total = sum(c.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        print(f"tokenswarm: {total} requests ({parts or 'none'}); run folder {self.run_dir}", flush=True)

    def failure_ratio(self) -> float:
        total = sum(v for k, v in self.status_counts.items() if k != "cancelled")
        failed = sum(v for k, v in self.status_counts.items() if k not in ("ok", "cancelled"))
        return failed / total if total else 0.0

    def exit_code(self) -> int:
        if not self.complete:
            return ExitStatus.INTERRUPTED
        if self.failure_ratio() > self.settings.max_fail_ratio:
            return ExitStatus.FAILURES
        return ExitStatus.OK

    def write_run_json(self) -> None:
        opts = self.env.parsed_options
        runner = self.env.runner
        data = {
            "run_id": self.run_id,
            "complete": self.complete,
            "mode": "concurrency",
            "started": self.started,
            "ended": self.ended,
            "settings": self.settings.public(),
            "locust": {
                "users": getattr(opts, "num_users", None),
                "spawn_rate": getattr(opts, "spawn_rate", None),
                "run_time": getattr(opts, "run_time", None),
                "stop_timeout": self.env.stop_timeout,
                "headless": self.headless,
                "role": "master" if self.is_master else "local",
                "expect_workers": getattr(opts, "expect_workers", None) if self.is_master else None,
            },
            "timeline": self.timeline,
            "workers": list(self.workers.values()),
            "records": self.writer.rows,
            "status_counts": self.status_counts,
            "versions": {"tokenswarm": __version__, "locust": locust.__version__, "python": sys.version.split()[0]},
            "host": {"name": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "runner_state": getattr(runner, "state", None),
        }
        runfolder.write_json(os.path.join(self.run_dir, runfolder.RUN_JSON), data)
