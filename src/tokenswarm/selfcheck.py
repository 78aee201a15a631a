"""Client self-check: when are a load generator's own timings untrustworthy?

Every process that runs users samples its event-loop lag (a greenlet sleeps
``LAG_INTERVAL_S`` and measures how late it wakes: the delay a chunk arriving
at that moment would have waited before being timestamped) and its CPU use.
A level during which any such process was saturated is flagged: the client,
not the server, set part of the measured latency. Thresholds:

* CPU at or above ``CPU_SATURATED_PCT`` percent of one core (Python runs on one)
  in at least ``MIN_BAD_SAMPLES`` one-second samples of the level, or
* event-loop lag p99 at or above ``LAG_SATURATED_MS`` in at least
  ``MIN_BAD_SAMPLES`` one-second samples.

Counting bad seconds (not a percentile over the level) makes the verdict
grow only with time: a flag raised live, over part of a level, holds over the
whole level in the report. One isolated slow second stays unflagged: it can
delay only the chunks of that second, under 1 % of a level of 100 s or more.

The advice is always the same: more workers (``--workers N``), or fewer
users per worker. Pure: the samplers live in the load generator.
"""

from __future__ import annotations

from dataclasses import dataclass

LAG_INTERVAL_S = 0.05  # the lag sampler's sleep
REPORT_S = 1.0  # samples are summarised (max lag, CPU) this often
CPU_SATURATED_PCT = 90.0
LAG_SATURATED_MS = 20.0
MIN_BAD_SAMPLES = 2
CSV_COLUMNS = ("time", "worker", "cpu_pct", "loop_lag_p99_ms", "loop_lag_max_ms")
ADVICE = "add workers (--workers N, or more worker processes/pods) or lower the users per worker"


@dataclass
class Sample:
    """One second of one process: its CPU (% of a core) and event-loop lag (ms)."""

    time: float
    worker: str
    cpu_pct: float
    loop_lag_p99_ms: float
    loop_lag_max_ms: float

    def fields(self) -> tuple[float, str, float, float, float]:
        """The sample as its CSV columns' values (what a worker ships to its master)."""
        return self.time, self.worker, self.cpu_pct, self.loop_lag_p99_ms, self.loop_lag_max_ms

    def row(self) -> list[str]:
        return [f"{self.time:.3f}", self.worker, f"{self.cpu_pct:.1f}", f"{self.loop_lag_p99_ms:.3f}",
                f"{self.loop_lag_max_ms:.3f}"]


def verdict(samples: list[Sample]) -> tuple[bool, str]:
    """Were these samples (one level, any workers) saturated? Returns (flag, one-line reason)."""
    by_worker: dict[str, list[Sample]] = {}
    for s in samples:
        by_worker.setdefault(s.worker, []).append(s)
    reasons = []
    for worker, ss in sorted(by_worker.items()):
        hot = sum(1 for s in ss if s.cpu_pct >= CPU_SATURATED_PCT)
        lagging = sum(1 for s in ss if s.loop_lag_p99_ms >= LAG_SATURATED_MS)
        tripped = []  # only what tripped the flag: a reader acts on the cause, not on a figure that was fine
        if lagging >= MIN_BAD_SAMPLES:
            lag = max(s.loop_lag_p99_ms for s in ss)
            tripped.append(f"event-loop lag p99 up to {lag:.0f} ms ({lagging} s at >= {LAG_SATURATED_MS:.0f} ms)")
        if hot >= MIN_BAD_SAMPLES:
            cpu = max(s.cpu_pct for s in ss)
            tripped.append(f"CPU up to {cpu:.0f}% of a core ({hot} s at >= {CPU_SATURATED_PCT:.0f}%)")
        if tripped:
            reasons.append(f"{worker}: {', '.join(tripped)}")
    return bool(reasons), "; ".join(reasons)


def lag_p99(values: list[float]) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(0.99 * len(v)))]
