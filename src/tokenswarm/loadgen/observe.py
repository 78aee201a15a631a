"""Watching a test live: per-level figures, progress lines, the web UI's time series, the client
self-check and the Prometheus exporter (the engine's metrics: :mod:`tokenswarm.loadgen.enginemetrics`;
the web UI itself: :mod:`tokenswarm.loadgen.webui`).

* :class:`LiveBooks` (master or local process) digests record rows once a
  second into per-level figures computed as the report computes them
  (:mod:`tokenswarm.report.live`): request and token rates, exact TTFT and
  TPOT percentiles so far, failures; "warming up" during a level's warm-up.
  Headless runs print :meth:`LiveBooks.progress_line` every few seconds; the
  web UI's tokenswarm tab shows :meth:`LiveBooks.table` and charts
  :class:`Series`, samples of :meth:`LiveBooks.sample` every few seconds.
* :class:`HealthSampler` (every process running users) measures its own
  event-loop lag and CPU; :mod:`tokenswarm.health` says when that makes a
  level untrustworthy.
* :class:`Exporter` serves tokenswarm's own metrics to Prometheus: latency
  histograms with LLM-sized buckets, token and request counters, users,
  level, per-worker CPU and loop lag.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from tokenswarm import health
from tokenswarm.records import COLUMNS, Row
from tokenswarm.report.live import WARMING_UP, LiveFigures
from tokenswarm.sweep import level_str

if TYPE_CHECKING:
    from locust.env import Environment

log = logging.getLogger("tokenswarm")

I = {name: i for i, name in enumerate(COLUMNS)}  # noqa: E741  (column index by name)
DIGEST_SLICE = 64  # rows digested between yields to the event loop

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0,
                30.0, 60.0)
TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
SERIES_S = 2.0  # the web UI's charts: a sample of the live figures this often (at first; see Series)
SERIES_CAP = 720  # samples kept: 24 min at 2 s; then every other one is let go and the interval doubles
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0,
               300.0, 600.0)


class LiveBooks:
    """Per-level figures from the rows seen so far, for progress lines, the web UI and Prometheus: rows are
    digested about once a second into :class:`tokenswarm.report.live.LiveFigures`, whose figures are the
    report's own definitions (window from the first send plus the warm-up, one weighting for every rate,
    exact percentiles over the level's sample)."""

    def __init__(self, exporter: Exporter | None = None) -> None:
        self.books = LiveFigures()
        self.pending: list[Row] = []
        self.exporter = exporter
        self.totals = {"ok": 0, "failed": 0, "cancelled": 0}

    def add(self, rows: list[Row]) -> None:
        self.pending.extend(rows)

    def digest(self) -> None:
        """Fold the rows received since the last call into the figures (about once a second), a slice at a
        time so the streams' greenlets read what arrives meanwhile."""
        rows, self.pending = self.pending, []
        for i in range(0, len(rows), DIGEST_SLICE):
            chunk = rows[i:i + DIGEST_SLICE]
            if i:
                gevent.sleep(0)
            self.books.add(chunk)
            for row in chunk:
                st = row[I["status"]]
                self.totals["ok" if st == "ok" else "cancelled" if st == "cancelled" else "failed"] += 1
            if self.exporter is not None:
                self.exporter.observe(chunk)

    def figures(self, segment: dict[str, Any] | None, warmup_s: float, now: float | None = None) -> dict[str, Any]:
        """One timeline segment's figures (``{"level", "start", "end"}``; see LiveFigures.figures)."""
        if segment is None:
            return self.books.figures("", time.time(), None, 0.0, now)
        return self.books.figures(level_str(segment["level"]), segment["start"], segment.get("end"), warmup_s, now)

    def progress_line(self, segment: dict[str, Any] | None, warmup_s: float, users: int, elapsed: float,
                      index: str = "") -> str:
        f = self.figures(segment, warmup_s)

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

        m, s = divmod(int(elapsed), 60)
        lvl = level_str(segment["level"]) if segment is not None else "-"
        failed = self.totals["failed"]
        done = failed + self.totals["ok"]
        return (f"tokenswarm {m:02d}:{s:02d} | level {lvl}{index} | users {users} | {rates_text(f)} | "
                f"TTFT p50 {ms(f['ttft_p50'])} p99 {ms(f['ttft_p99'])} ms | TPOT p50 {ms(f['tpot_p50'])} ms | "
                f"ok {self.totals['ok']} failed {failed}" + (f" ({100 * failed / done:.1f} %)" if failed else ""))

    def table(self, segments: list[tuple[dict[str, Any], float]], flags: dict[str, str]) -> list[dict[str, Any]]:
        """Rows for the web UI's tokenswarm tab, newest level first: ``segments`` are the timeline's
        (segment, warm-up s), the last one running."""
        out = []
        for n, (seg, warmup) in enumerate(reversed(segments)):
            f = self.figures(seg, warmup)
            key = level_str(seg["level"])

            def r(v: float | None, nd: int = 1) -> Any:
                return "" if v is None else round(v, nd)

            measured = f["req_s"] is not None
            out.append({
                "level": key + (" (now)" if n == 0 and seg.get("end") is None else ""), "ok": f["ok"],
                "failed": f["failed"], "failed_pct": r(f["failed_pct"]) if f["failed"] else 0,
                "reqs": r(f["req_s"], 2) if measured else f["phase"],
                "tokens": r(f["output_tok_s"], 0) if measured else f["phase"],
                "ttft50": r(f["ttft_p50"]), "ttft99": r(f["ttft_p99"]), "tpot50": r(f["tpot_p50"], 2),
                "tpot99": r(f["tpot_p99"], 2), "client": flags.get(key, "ok"),
            })
        return out


    def sample(self, segment: dict[str, Any] | None, warmup_s: float, users: int, now: float) -> dict[str, Any]:
        """One point of the web UI's charts: the current level's live figures at epoch ``now`` (rates None
        while warming up or measuring, percentiles None without a sample), the users running, and the test's
        finished requests so far (``ok``, ``failed``: the charts take failures per second from these)."""
        f = self.figures(segment, warmup_s, now)

        def r(v: float | None, nd: int = 1) -> float | None:
            return None if v is None else round(v, nd)

        return {"t": round(now, 2), "users": users, "level": level_str(segment["level"]) if segment else "",
                "phase": f["phase"], "output_tok_s": r(f["output_tok_s"]), "req_s": r(f["req_s"], 2),
                "ttft_p50": r(f["ttft_p50"]), "ttft_p99": r(f["ttft_p99"]), "tpot_p50": r(f["tpot_p50"], 2),
                "tpot_p99": r(f["tpot_p99"], 2), "ok": self.totals["ok"], "failed": self.totals["failed"],
                "failed_pct": r(f["failed_pct"]) if f["failed"] else 0.0}


class Series:
    """The web UI's charts over time: samples taken every ``interval_s``, at most ``cap`` of them. When the
    list is full every other sample is let go and the interval doubles, so a test of any length is drawn
    whole, from its first sample to its newest, more coarsely the longer it runs. Readers ask for the samples
    after a time they already have (:meth:`since`), so a poll carries one or two samples."""

    def __init__(self, interval_s: float = SERIES_S, cap: int = SERIES_CAP) -> None:
        self.interval_s = interval_s
        self.cap = max(cap, 4)
        self.samples: list[dict[str, Any]] = []
        self._times: list[float] = []
        self._next = -float("inf")

    def due(self, now: float) -> bool:
        return now >= self._next

    def add(self, sample: dict[str, Any], now: float) -> None:
        """Keep ``sample`` (its ``t`` later than the last one's); the next is due ``interval_s`` after ``now``."""
        self.samples.append(sample)
        self._times.append(sample["t"])
        self._next = now + self.interval_s
        if len(self.samples) >= self.cap:
            kept = self.samples[::2]  # the first and every other one: the test's start stays drawn
            if kept[-1] is not self.samples[-1]:
                kept.append(self.samples[-1])  # and the newest
            self.samples = kept
            self._times = [x["t"] for x in self.samples]
            self.interval_s *= 2

    def since(self, t: float) -> list[dict[str, Any]]:
        """The samples taken after epoch ``t`` (all of them for 0: samples carry epoch times)."""
        return self.samples[bisect.bisect_right(self._times, t):]


def rates_text(f: dict[str, Any]) -> str:
    """``38.2 req/s | in 4,890 tok/s | out 2,451 tok/s``, or what keeps them from being known yet."""
    if f["phase"] == WARMING_UP:
        return f"warming up ({f['warmup_left_s']:.1f} s left)"
    if f["req_s"] is None:
        return "measuring (waiting for a request lifetime)"
    return f"{f['req_s']:.2f} req/s | in {f['input_tok_s']:,.0f} tok/s | out {f['output_tok_s']:,.0f} tok/s"


class HealthSampler:
    """This process's event-loop lag and CPU, summarised every second into :class:`health.Sample`."""

    def __init__(self, worker: str, sink: Callable[[health.Sample], None]) -> None:
        self.worker = worker
        self.sink = sink
        self.proc = psutil.Process(os.getpid())
        self.proc.cpu_percent(None)
        self.greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        interval = health.LAG_INTERVAL_S
        lags: list[float] = []
        next_report = time.monotonic() + health.REPORT_S
        while True:
            t0 = time.monotonic()
            gevent.sleep(interval)
            t1 = time.monotonic()
            lags.append(max(0.0, (t1 - t0 - interval) * 1000.0))
            if t1 >= next_report:
                self.sink(health.Sample(time.time(), self.worker, self.proc.cpu_percent(None),
                                        health.lag_p99(lags), max(lags) if lags else 0.0))
                lags = []
                next_report = t1 + health.REPORT_S

    def stop(self) -> None:
        self.greenlet.kill(block=True)


class Exporter:
    """tokenswarm's Prometheus metrics (prometheus-client, its own registry)."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.ttft = Histogram("tokenswarm_ttft_seconds", "Time to first token.", buckets=TTFT_BUCKETS, registry=reg)
        self.tpot = Histogram("tokenswarm_tpot_seconds", "Time per output token after the first.",
                              buckets=TPOT_BUCKETS, registry=reg)
        self.itl = Histogram("tokenswarm_itl_seconds", "Inter-token latency.", buckets=TPOT_BUCKETS, registry=reg)
        self.e2e = Histogram("tokenswarm_e2e_seconds", "Request latency to the last token.", buckets=E2E_BUCKETS,
                             registry=reg)
        self.in_tok = Counter("tokenswarm_input_tokens", "Prompt tokens of finished requests.", registry=reg)
        self.out_tok = Counter("tokenswarm_output_tokens", "Output tokens of finished requests.", registry=reg)
        self.requests = Counter("tokenswarm_requests", "Finished requests by status.", ["status"], registry=reg)
        self.users = Gauge("tokenswarm_users", "Users (concurrent streams) running.", registry=reg)
        self.level = Gauge("tokenswarm_level", "Current level (target concurrency, or rate in req/s).", registry=reg)
        self.cpu = Gauge("tokenswarm_worker_cpu_percent", "Load-generator CPU, percent of one core.", ["worker"],
                         registry=reg)
        self.lag = Gauge("tokenswarm_worker_loop_lag_seconds", "Load-generator event-loop lag (p99 over 1 s).",
                         ["worker"], registry=reg)
        self.users.set_function(lambda: float(getattr(self.env.runner, "user_count", 0) or 0))

    def observe(self, rows: list[Row]) -> None:
        for row in rows:
            status = row[I["status"]]
            self.requests.labels(status).inc()
            if status != "ok":
                continue
            if row[I["ttft_ms"]]:
                self.ttft.observe(float(row[I["ttft_ms"]]) / 1000.0)
            if row[I["tpot_ms"]]:
                self.tpot.observe(float(row[I["tpot_ms"]]) / 1000.0)
            if row[I["e2e_ms"]]:
                self.e2e.observe(float(row[I["e2e_ms"]]) / 1000.0)
            for x in row[I["itl_ms"]].split():
                self.itl.observe(float(x) / 1000.0)
            self.in_tok.inc(int(row[I["input_tokens"]] or 0))
            self.out_tok.inc(int(row[I["output_tokens"]] or 0))

    def health(self, s: health.Sample) -> None:
        self.cpu.labels(s.worker).set(s.cpu_pct)
        self.lag.labels(s.worker).set(s.loop_lag_p99_ms / 1000.0)

    def wsgi_app(self) -> Any:
        return make_wsgi_app(self.registry)

    def serve(self, host: str, port: int) -> Any:
        """A standalone /metrics server (headless runs), on gevent's WSGI server."""
        from gevent.pywsgi import WSGIServer

        server = WSGIServer((host, port), self.wsgi_app(), log=None)
        server.start()
        return server
