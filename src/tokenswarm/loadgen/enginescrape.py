"""The engine's ``/metrics`` during a run: :class:`EngineMetricsSampler` writes server_metrics.csv (and, with
``--gpu-metrics``, a DCGM exporter's page to gpu_metrics.csv: the same sampler with
:data:`tokenswarm.enginemetrics.GPU_FEED`, one row per GPU and scrape).

It scrapes every ``interval`` seconds, and at once when the controller marks a
level's edge (:meth:`EngineMetricsSampler.mark`: a level starts, or the load
stops), so the engine's histogram sums and counts are read close to each
measurement window's edges. Each row holds the common gauges and counters and
the histograms' ``_sum``/``_count`` (:mod:`tokenswarm.enginemetrics`), how long
the scrape took (``scrape_ms``: an API server that is slow to answer /metrics
is slow to answer everything) and, for a marked scrape, the edge's time
(``edge_time``). Runs on the master or the single local process, in a greenlet:
a scrape waits cooperatively (gevent-patched sockets) and is given up after
:data:`SCRAPE_LIMIT_S` in all, so a slow engine costs rows, not the event loop.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable

import gevent
from gevent.event import Event

from tokenswarm import enginemetrics
from tokenswarm.sweep import level_str

log = logging.getLogger("tokenswarm")

SCRAPE_TIMEOUT_S = 5.0  # to connect, and for each read
SCRAPE_LIMIT_S = 10.0  # for the whole scrape


class EngineMetricsSampler:
    """Scrapes a metrics page every ``interval`` seconds, and at each marked level edge, into ``path``.

    ``feed`` says which page and how its rows look (:data:`tokenswarm.enginemetrics.ENGINE_FEED`, the
    engine's, by default; :data:`~tokenswarm.enginemetrics.GPU_FEED` for a DCGM exporter)."""

    def __init__(self, url: str, path: str, level: Callable[[], float | None], interval: float = 2.0,
                 headers: dict[str, str] | None = None,
                 feed: enginemetrics.Feed = enginemetrics.ENGINE_FEED) -> None:
        self.feed = feed
        self.scraper = enginemetrics.Scraper(url, headers, SCRAPE_TIMEOUT_S, feed.parse)
        self.level = level
        self.interval = interval
        self.rows = 0
        self.failures = 0
        self._edges: list[float] = []  # marked edges (epoch s) not yet scraped
        self._wake = Event()
        self._fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.writer(self._fh)
        if self._fh.tell() == 0:
            self._w.writerow(feed.columns)
        self.greenlet = gevent.spawn(self._loop)

    def mark(self, level: float | None, t: float | None = None) -> None:
        """A level's edge at epoch ``t`` (now when None): scrape at once, without blocking the caller.
        ``level`` is the level starting there (None: the load stops); rows take their level from the
        ``level`` callable when scraped."""
        self._edges.append(time.time() if t is None else t)
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.clear()
            self._scrape()
            self._wake.wait(self.interval)

    def _scrape(self) -> None:
        edges, self._edges = self._edges, []
        t0 = time.time()
        limit = gevent.Timeout(SCRAPE_LIMIT_S)  # not an OSError: the HTTP stack below lets it through
        limit.start()
        try:
            values = self.scraper.scrape()
            error = None
        except gevent.Timeout as t:
            if t is not limit:
                raise
            error = f"no whole answer within {SCRAPE_LIMIT_S:g}s"
        except (OSError, ValueError) as e:
            error = str(e) or type(e).__name__
        finally:
            limit.close()
        if error is not None:
            self.scraper.close()  # an answer may be left half read: the next scrape connects again
            self.failures += 1
            if self.failures == 1:
                log.warning("tokenswarm: cannot read %s at %s (%s); will keep trying",
                            self.feed.what, self.scraper.url, error)
            return
        t1 = time.time()
        lvl = self.level()
        head = [f"{t1:.3f}", level_str(lvl) if lvl is not None else ""]
        tail = [f"{(t1 - t0) * 1000.0:.1f}", f"{edges[-1]:.3f}" if edges else ""]
        cells = self.feed.cells(values)
        self._w.writerows([*head, *row, *tail] for row in cells)
        self._fh.flush()
        self.rows += len(cells)

    def stop(self) -> None:
        """Stop sampling; an edge marked since the last scrape is scraped now."""
        self.greenlet.kill(block=True)
        if self._edges:
            self._scrape()
        self.scraper.close()
        self._fh.close()
