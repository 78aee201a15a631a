"""Watching a test live: per-level figures, progress lines and the web UI's time series.

:class:`LiveWatch` (master or local process) digests record rows once a second into per-level figures
computed as the report computes them (:mod:`tokenswarm.report.live`): request and token rates, exact TTFT
and TPOT percentiles so far, failures; "warming up" during a level's warm-up. Headless runs print
:meth:`LiveWatch.progress_line` every few seconds; the web UI's tokenswarm tab shows :meth:`LiveWatch.table`
and charts :class:`Series`, samples of :meth:`LiveWatch.sample` every few seconds. (The client self-check:
:mod:`tokenswarm.loadgen.selfcheck`; the Prometheus exporter: :mod:`tokenswarm.loadgen.exporter`; the
engine's metrics: :mod:`tokenswarm.loadgen.enginescrape`.)
"""

from __future__ import annotations

import bisect
import math
import time
from typing import TYPE_CHECKING, Any

import gevent

from tokenswarm.report.intervals import Interval
from tokenswarm.report.live import WARMING_UP, LiveFigures, level_intervals
from tokenswarm.requestscsv import COLUMN_INDEX as I  # noqa: N812  (a row's field by column name)
from tokenswarm.requestscsv import Row
from tokenswarm.sweep import level_str

if TYPE_CHECKING:
    from tokenswarm.loadgen.exporter import Exporter

DIGEST_SLICE = 64  # rows digested between yields to the event loop
SERIES_S = 2.0  # the web UI's charts: a sample of the live figures this often (at first; see Series)
SERIES_CAP = 720  # samples kept: 24 min at 2 s; then every other one is let go and the interval doubles


class LiveWatch:
    """Per-level figures from the rows seen so far, for progress lines, the web UI and Prometheus: rows are
    digested about once a second into :class:`tokenswarm.report.live.LiveFigures`, whose figures are the
    report's own definitions (window from the first send plus the warm-up, one weighting for every rate,
    exact percentiles over the level's sample)."""

    def __init__(self, exporter: Exporter | None = None, closed_loop: bool = False) -> None:
        self.so_far = LiveFigures(closed_loop=closed_loop)
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
            self.so_far.add(chunk)
            for row in chunk:
                st = row[I["status"]]
                self.totals["ok" if st == "ok" else "cancelled" if st == "cancelled" else "failed"] += 1
            if self.exporter is not None:
                self.exporter.observe(chunk)

    def figures(self, segment: dict[str, Any] | None, warmup_s: float, now: float | None = None) -> dict[str, Any]:
        """One timeline segment's figures (``{"level", "start", "end"}``; see LiveFigures.figures)."""
        if segment is None:
            return self.so_far.figures("", time.time(), None, 0.0, now)
        key = level_str(segment["level"])
        return self.so_far.figures(key, segment["start"], segment.get("end"), warmup_s, now,
                                   self.so_far.opens(key, segment.get("sent_before")))

    def failed(self, level: float) -> int:
        """Failed requests of ``level`` so far."""
        lv = self.so_far.levels.get(level_str(level))
        return lv.failed if lv is not None else 0

    def intervals(self, segment: dict[str, Any] | None, warmup_s: float, now: float | None = None,
                  good: Any = None) -> dict[str, Any]:
        """The 95 % intervals of one timeline segment's figures so far
        (:func:`tokenswarm.report.live.level_intervals`); ``{"n": 0}`` before the first level."""
        if segment is None:
            return {"n": 0}
        key = level_str(segment["level"])
        return level_intervals(self.so_far, key, segment["start"], segment.get("end"), warmup_s, now, good,
                               self.so_far.opens(key, segment.get("sent_before")))

    def progress_line(self, segment: dict[str, Any] | None, warmup_s: float, users: int, elapsed: float,
                      index: str = "") -> str:
        f = self.figures(segment, warmup_s)
        ci = self.intervals(segment, warmup_s) if f["req_s"] is not None else {}

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

        m, s = divmod(int(elapsed), 60)
        lvl = level_str(segment["level"]) if segment is not None else "-"
        failed = self.totals["failed"]
        done = failed + self.totals["ok"]
        return (f"tokenswarm {m:02d}:{s:02d} | level {lvl}{index} | users {users} | {rates_text(f, ci)} | "
                f"TTFT p50 {ms(f['ttft_p50'])} p99 {ms(f['ttft_p99'])}{pm(ci.get('ttft_p99'))} ms | "
                f"TPOT p50 {ms(f['tpot_p50'])} ms | "
                f"ok {self.totals['ok']} failed {failed}" + (f" ({100 * failed / done:.1f} %)" if failed else ""))

    def table(self, segments: list[tuple[dict[str, Any], float]], flags: dict[str, str],
              marks: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Rows for the web UI's tokenswarm tab, newest level first: ``segments`` are the timeline's
        (segment, warm-up s), the last one running; ``marks``: each level's marks after its number (``16*``)."""
        marks = marks or {}
        out = []
        for n, (seg, warmup) in enumerate(reversed(segments)):
            f = self.figures(seg, warmup)
            key = level_str(seg["level"])

            def r(v: float | None, nd: int = 1) -> Any:
                return "" if v is None else round(v, nd)

            measured = f["req_s"] is not None
            out.append({
                "level": key + marks.get(key, "") + (" (now)" if n == 0 and seg.get("end") is None else ""),
                "ok": f["ok"],
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


def pm(iv: Interval | None, digits: int = 0) -> str:
    """`` ±12`` (the 95 % interval's larger side, as the report's tables print it), `` ±?`` when a bound is
    unknown, '' without an interval."""
    if iv is None or math.isnan(iv.estimate):
        return ""
    if math.isnan(iv.low) or math.isnan(iv.high):
        return " ±?"
    return f" ±{max(iv.estimate - iv.low, iv.high - iv.estimate):,.{digits}f}"


def rates_text(f: dict[str, Any], ci: dict[str, Any] | None = None) -> str:
    """``38.2 req/s | in 4,890 tok/s | out 2,451 ±40 tok/s``, or what keeps them from being known yet."""
    if f["phase"] == WARMING_UP:
        if not math.isfinite(f["warmup_left_s"]):
            return "warming up (the level before is draining)"
        return f"warming up ({f['warmup_left_s']:.1f} s left)"
    if f["req_s"] is None:
        return "measuring (waiting for a request lifetime)"
    out = pm((ci or {}).get("output_tok_s"))
    return f"{f['req_s']:.2f} req/s | in {f['input_tok_s']:,.0f} tok/s | out {f['output_tok_s']:,.0f}{out} tok/s"
