"""The run folder's raw files, written by one object: the only writer of a run folder.

A :class:`RunRecorder` lives on the master or the single local process for one test. It appends rows to
requests.csv (its own users' rows, or batches shipped by workers) and counts them by status and level,
writes client_health.csv (the self-check's samples), Locust's CSV files (its stats writer while the test
runs, the final tables at the end) and run.json (the settings, the timeline, the workers, the counts).
Everything derived (levels.csv, the report) is built from these files afterwards
(:mod:`tokenswarm.report`).
"""

from __future__ import annotations

import csv
import os
import platform
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import gevent
import locust
from locust import stats as locust_stats

from tokenswarm import __version__, runfolder, selfcheck
from tokenswarm.loadgen import workarounds
from tokenswarm.requestscsv import LEVEL_COL, STATUS_COL, RequestsWriter, Row

if TYPE_CHECKING:
    from locust.env import Environment

HEALTH_CSV = "client_health.csv"


class RunRecorder:
    """The raw files of the run folder ``run_dir`` for one test of ``environment``."""

    def __init__(self, environment: Environment, run_dir: str) -> None:
        self.env = environment
        self.run_dir = run_dir
        self.run_id = os.path.basename(os.path.normpath(run_dir))
        self.requests = RequestsWriter(os.path.join(run_dir, runfolder.REQUESTS_CSV))
        self.status_counts: dict[str, int] = {}
        self.status_by_level: dict[str, dict[str, int]] = {}  # level -> status -> requests
        self.done_by_level: dict[str, int] = {}  # finished (not cancelled) requests per level
        self.samples: list[selfcheck.Sample] = []
        self._samples_fh = open(os.path.join(run_dir, HEALTH_CSV), "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._samples_w = csv.writer(self._samples_fh)
        self._samples_w.writerow(selfcheck.CSV_COLUMNS)
        self._csv: locust_stats.StatsCSVFileWriter | None = None

    @property
    def rows(self) -> int:
        """Rows written to requests.csv so far."""
        return self.requests.rows

    # -- while the test runs -------------------------------------------------------------------
    def start_locust_csvs(self) -> gevent.Greenlet:
        """Locust's statistics history, written as Locust writes it with ``--csv``: the greenlet that does."""
        self._csv = locust_stats.StatsCSVFileWriter(
            self.env, locust_stats.PERCENTILES_TO_REPORT, os.path.join(self.run_dir, runfolder.LOCUST_PREFIX),
            full_history=True,
        )
        return gevent.spawn(self._csv.stats_writer)

    def add_rows(self, rows: list[Row]) -> None:
        """Finished requests' rows: appended to requests.csv (flushed by :meth:`flush`) and counted."""
        self.requests.write(rows)
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

    def add_sample(self, sample: selfcheck.Sample) -> None:
        self.samples.append(sample)
        self._samples_w.writerow(sample.row())

    def flush(self) -> None:
        self.requests.flush()
        self._samples_fh.flush()

    # -- the end ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close requests.csv and client_health.csv; write Locust's final tables."""
        self._samples_fh.close()
        self._final_locust_csvs()
        self.requests.close()

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

    def counts_line(self, lost_workers: int = 0, lost_in_flight: int = 0) -> str:
        """``tokenswarm: N requests (ok n, ...); run folder DIR``, with workers lost if any."""
        c = self.status_counts
        total = sum(c.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        lost = ""
        if lost_workers:
            lost = f"; {lost_workers} worker(s) lost with {lost_in_flight} requests in flight (see run.json)"
        return f"tokenswarm: {total} requests ({parts or 'none'}){lost}; run folder {self.run_dir}"

    def write_run_json(self, run: dict[str, Any]) -> None:
        """run.json: ``run`` (what the controller knows: settings, timeline, workers, end) with this
        recorder's counts and the versions and host around it."""
        opts = self.env.parsed_options
        data = {
            "run_id": self.run_id,
            **run,
            "records": self.requests.rows,
            "status_counts": self.status_counts,
            "versions": {"tokenswarm": __version__, "locust": locust.__version__, "python": sys.version.split()[0]},
            "host": {"name": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "runner_state": getattr(self.env.runner, "state", None),
        }
        data.setdefault("locust", {}).update({
            "users": getattr(opts, "num_users", None),
            "spawn_rate": getattr(opts, "spawn_rate", None),
            "stop_timeout": self.env.stop_timeout,
            "headless": bool(getattr(opts, "headless", False)),
        })
        runfolder.write_json(os.path.join(self.run_dir, runfolder.RUN_JSON), data)
