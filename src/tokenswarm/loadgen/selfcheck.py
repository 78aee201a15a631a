"""The client self-check: every process that runs users measures its own event-loop lag and CPU
(:class:`SelfCheckSampler`); :mod:`tokenswarm.selfcheck` says when that makes a level's timings untrustworthy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import gevent
import psutil

from tokenswarm import selfcheck


class SelfCheckSampler:
    """This process's event-loop lag and CPU, summarised every second into :class:`selfcheck.Sample`."""

    def __init__(self, worker: str, sink: Callable[[selfcheck.Sample], None]) -> None:
        self.worker = worker
        self.sink = sink
        self.proc = psutil.Process(os.getpid())
        self.proc.cpu_percent(None)
        self.greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        interval = selfcheck.LAG_INTERVAL_S
        lags: list[float] = []
        next_report = time.monotonic() + selfcheck.REPORT_S
        while True:
            t0 = time.monotonic()
            gevent.sleep(interval)
            t1 = time.monotonic()
            lags.append(max(0.0, (t1 - t0 - interval) * 1000.0))
            if t1 >= next_report:
                self.sink(selfcheck.Sample(time.time(), self.worker, self.proc.cpu_percent(None),
                                        selfcheck.lag_p99(lags), max(lags) if lags else 0.0))
                lags = []
                next_report = t1 + selfcheck.REPORT_S

    def stop(self) -> None:
        self.greenlet.kill(block=True)
