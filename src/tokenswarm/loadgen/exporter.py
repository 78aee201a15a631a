"""tokenswarm's own Prometheus metrics (prometheus-client, its own registry): latency histograms with
LLM-sized buckets, token and request counters, users, level, per-worker CPU and loop lag. Served by the web
UI at /metrics, or headless on ``--metrics-port`` (bound to ``--metrics-bind``: loopback unless told).

The last word: a headless run's figures are digested about once a second, and the process exits when its
report is written, so a scraper would never see the last second's requests. The run controller digests them
at the end, before the report, and then holds on until one scrape has been answered with those final totals
(:meth:`Exporter.await_final_scrape`, at most :data:`LAST_WORD_S`): the last ``/metrics`` answer equals
requests.csv."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from tokenswarm import selfcheck
from tokenswarm.requestscsv import COLUMN_INDEX as I  # noqa: N812  (a row's field by column name)
from tokenswarm.requestscsv import Row

if TYPE_CHECKING:
    from locust.env import Environment

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0,
                30.0, 60.0)
TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
LAST_WORD_S = 3.0  # how long a headless run's end waits for a scrape of its final totals
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0,
               300.0, 600.0)


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
        self.server: Any = None  # the standalone /metrics server (headless runs), once serving
        self.scrapes = 0  # /metrics answers given by the standalone server

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

    def health(self, s: selfcheck.Sample) -> None:
        self.cpu.labels(s.worker).set(s.cpu_pct)
        self.lag.labels(s.worker).set(s.loop_lag_p99_ms / 1000.0)

    def wsgi_app(self) -> Any:
        return make_wsgi_app(self.registry)

    def serve(self, host: str, port: int) -> Any:
        """A standalone /metrics server (headless runs) on ``host:port``, on gevent's WSGI server; it counts
        its answers (:attr:`scrapes`)."""
        from gevent.pywsgi import WSGIServer

        app = self.wsgi_app()

        def counted(environ: Any, start_response: Any) -> Any:
            body = app(environ, start_response)
            self.scrapes += 1
            return body

        server = WSGIServer((host, port), counted, log=None)
        server.start()
        self.server = server
        return server

    def await_final_scrape(self, timeout_s: float = LAST_WORD_S) -> bool:
        """Call once the final figures are in: wait (this greenlet) until the standalone server has answered a
        scrape with them, at most ``timeout_s`` seconds. True when one was answered; False after the timeout
        or without a standalone server (the web UI's process outlives the test by itself)."""
        if self.server is None:
            return False
        import gevent

        seen = self.scrapes
        deadline = time.monotonic() + timeout_s
        while self.scrapes == seen and time.monotonic() < deadline:
            gevent.sleep(0.05)
        return self.scrapes > seen
