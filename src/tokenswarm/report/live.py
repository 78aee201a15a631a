"""Live per-level figures over the records seen so far, with the report's own definitions.

The progress lines and the web UI's tokenswarm tab read :class:`LiveFigures`;
it holds the requests.csv rows that arrived (as strings, in
:data:`tokenswarm.requestscsv.COLUMNS` order) and computes a level's figures with
the functions of :mod:`tokenswarm.report.levels`: the window opens at the
level's first request sent plus its warm-up, every rate weights each ``ok``
request by the share of its first..last-token span inside the window
(:func:`~tokenswarm.report.levels.window_rates`), and TTFT/TPOT percentiles are
exact over the level's sample (its ``ok`` requests sent after the warm-up).

What differs from the final table, and why:

* A record arrives only when its request has ended, so a window reaching up
  to *now* would miss the share of the requests still in flight (a level
  read 128 tok/s live against 318 in the final table when rates were counted
  up to now). The live window therefore ends at a *horizon*: now minus the
  longest request lifetime seen lately minus ``IN_TRANSIT_S`` (records still
  on their way from workers). Until the horizon passes the window's start the
  level is ``measuring``; before its warm-up has passed, ``warming up``.
* Cost: the rates of the current level use the last ``LIVE_WINDOW_S`` seconds
  of its window, and the most recent ``LIVE_ROWS`` to twice as many records
  are kept (and as many samples per level): a figure is a few vectorised
  passes over at most that many values, whatever the length of the run
  (measured: 0.25 ms with 5,000 records, 2.2 ms with 200,000; digesting 1-2.5
  us a record). A level that has ended is computed over its whole window (the
  part whose records are still held) once the horizon has passed its end, and
  kept.

No locust or gevent here: :class:`tokenswarm.loadgen.livewatch.LiveWatch` feeds it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenswarm.report import intervals
from tokenswarm.report.intervals import Interval
from tokenswarm.report.levels import failed_pct, percentiles, window_rates
from tokenswarm.requestscsv import COLUMNS

LIVE_WINDOW_S = 60.0  # the current level's live rates cover at most its last this-many seconds
LIVE_ROWS = 50_000  # most recent records kept for the rates, and samples kept per level
IN_TRANSIT_S = 1.5  # records may still be on their way: workers ship them every second
WARMING_UP, MEASURING, MEASURED = "warming up", "measuring", "measured"

_I = {name: i for i, name in enumerate(COLUMNS)}
_RATE_COLS = ("first", "last", "close", "input", "output")
_SAMPLE = ("start", "ok", "ttft", "tpot", "e2e", "close")
S = {name: i for i, name in enumerate(_SAMPLE)}


class _Buffer:
    """Float columns that grow by chunks and keep their last ``cap`` rows or a little more: chunks are joined
    when read, and trimmed to ``cap`` rows once they reach twice that. ``dropped_max`` is the largest value
    of column ``watch`` among the rows dropped so far (-inf: none)."""

    def __init__(self, ncols: int, cap: int, watch: int = 0) -> None:
        self.cap = cap
        self.watch = watch
        self.data = np.empty((0, ncols))
        self.parts: list[np.ndarray] = []
        self.dropped_max = -math.inf

    def extend(self, chunk: np.ndarray) -> None:
        if len(chunk):
            self.parts.append(chunk)

    def view(self) -> np.ndarray:
        if self.parts:
            self.data = np.concatenate([self.data, *self.parts])
            self.parts = []
            if len(self.data) >= 2 * self.cap:
                gone = self.data[:-self.cap, self.watch]
                self.dropped_max = max(self.dropped_max, float(np.nanmax(gone)))
                self.data = self.data[-self.cap:].copy()
        return self.data


@dataclass
class _Level:
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    first_send: float = math.inf
    last_end: float = -math.inf  # the latest close of the level's requests (epoch s)
    firsts: dict[str, float] | None = None  # closed loop: the first send of each user (worker:user) joining here
    sample: _Buffer | None = None  # finished requests: start_time, ok (1/0), ttft_ms, tpot_ms, e2e_ms, close_ms
    final: dict[str, Any] | None = None  # the figures of an ended level, once every record is in


def _level_key(text: str) -> str:
    """A level as requests.csv and run.json spell it (``8``, ``0.5``), whatever the row's own spelling."""
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def _floats(rows: list[list[str]], col: str) -> np.ndarray:
    i = _I[col]
    return np.array([r[i] or "nan" for r in rows], dtype=float)


class LiveFigures:
    """Per-level figures over the records seen so far (see the module docstring)."""

    def __init__(self, cap: int = LIVE_ROWS, closed_loop: bool = False) -> None:
        self.cap = cap
        #: users send their next request when their last ends: a level's window opens once its last user sent
        self.closed_loop = closed_loop
        self.users: set[str] = set()  # closed loop: every user (worker:user) seen so far
        self.levels: dict[str, _Level] = {}
        # ok requests of any level: first and last token, close (epoch s), prompt and output tokens
        self.rates = _Buffer(len(_RATE_COLS), cap, watch=1)
        self.records = 0

    def add(self, rows: list[list[str]]) -> None:
        """Take requests.csv rows (strings, COLUMNS order)."""
        if not rows:
            return
        self.records += len(rows)
        status = np.array([r[_I["status"]] for r in rows], dtype=object)
        level = np.array([r[_I["level"]] for r in rows], dtype=object)
        start, ttft, tpot = _floats(rows, "start_time"), _floats(rows, "ttft_ms"), _floats(rows, "tpot_ms")
        e2e, close = _floats(rows, "e2e_ms"), _floats(rows, "close_ms")
        ok = status == "ok"
        for raw in dict.fromkeys(level.tolist()):
            mine = level == raw
            key = _level_key(raw)
            lv = self.levels.get(key)
            if lv is None:
                lv = self.levels[key] = _Level(sample=_Buffer(len(_SAMPLE), self.cap))
            n_ok = int((mine & ok).sum())
            n_cancelled = int((mine & (status == "cancelled")).sum())
            lv.ok += n_ok
            lv.cancelled += n_cancelled
            lv.failed += int(mine.sum()) - n_ok - n_cancelled
            lv.first_send = min(lv.first_send, float(start[mine].min()))
            ends = start[mine] + np.nan_to_num(close[mine]) / 1000.0
            lv.last_end = max(lv.last_end, float(ends.max()))
            if self.closed_loop:  # users that joined in this level: their first sends (a user's records come
                # in the order it sent them: it sends its next request when its last has ended)
                firsts = lv.firsts if lv.firsts is not None else {}
                lv.firsts = firsts
                for i in np.flatnonzero(mine):
                    who = f"{rows[i][_I['worker']]}:{rows[i][_I['user']]}"
                    if who not in self.users:
                        self.users.add(who)
                        firsts[who] = float(start[i])
            keep = mine & (status != "cancelled")
            if keep.any():
                lv.sample.extend(np.column_stack([start[keep], ok[keep].astype(float), ttft[keep], tpot[keep],
                                                  e2e[keep], close[keep]]))
        if ok.any():
            n_in, n_out = _floats(rows, "input_tokens"), _floats(rows, "output_tokens")
            s = start[ok]
            first = np.where(np.isnan(ttft[ok]), e2e[ok], ttft[ok])  # a whole answer's output comes at its end
            self.rates.extend(np.column_stack([s + first / 1000.0, s + e2e[ok] / 1000.0,
                                               s + close[ok] / 1000.0, n_in[ok], n_out[ok]]))

    def horizon(self, now: float) -> float:
        """The time up to which every request overlapping a window has (most likely) reported: now minus the
        longest time from first token to close among the requests that ended in the last LIVE_WINDOW_S,
        minus IN_TRANSIT_S. A request still in flight whose own first-token-to-close time is not longer has
        its first token after the horizon, so it adds nothing before it."""
        d = self.rates.view()
        if not len(d):
            return -math.inf
        recent = d[:, 2] >= now - LIVE_WINDOW_S
        spans = d[recent, 2] - d[recent, 0]
        life = float(np.nanmax(spans)) if recent.any() and not np.isnan(spans).all() else 0.0  # whole answers: NaN
        return now - (life if math.isfinite(life) else 0.0) - IN_TRANSIT_S

    def opens(self, key: str, sent_before: int | None = None) -> float:
        """The earliest a level's window may open, beside its warm-up (epoch s; -inf: no floor). In a closed
        loop, once the last of the users that joined in it sent its first request (as far as records tell). For a
        level below the one before it (``sent_before``: requests sent before it began), once those requests have
        ended: +inf while fewer records of other levels are in, then the latest of their ends (the report's rule,
        :func:`tokenswarm.report.levels.windows_from`)."""
        lv = self.levels.get(_level_key(key))
        floor = max(lv.firsts.values()) if lv is not None and lv.firsts else -math.inf
        if sent_before is None:
            return floor
        mine = lv.ok + lv.failed + lv.cancelled if lv is not None else 0
        if self.records - mine < sent_before:
            return math.inf
        k = _level_key(key)
        return max([floor] + [o.last_end for name, o in self.levels.items() if name != k])

    def figures(self, key: str, start: float, end: float | None, warmup_s: float, now: float | None = None,
                opens: float = -math.inf) -> dict[str, Any]:
        """One level's figures: the level ``key`` (as in requests.csv) began at epoch ``start``, ended at
        ``end`` (None: running) and leaves out its first ``warmup_s`` seconds of load, and what comes before
        ``opens`` (:meth:`opens`).

        Keys: ``level``, ``ok``, ``failed``, ``failed_pct``, ``phase`` (warming up, measuring, measured),
        ``warmup_left_s``, ``window_s`` (the span the rates cover), ``req_s``, ``input_tok_s``,
        ``output_tok_s`` (None until measured), ``ttft_p50``, ``ttft_p99``, ``tpot_p50``, ``tpot_p99``,
        ``e2e_p50``, ``e2e_p99`` (ms; None without a sample)."""
        now = time.time() if now is None else now
        lv = self.levels.get(_level_key(key)) or _Level()
        if lv.final is not None:
            return lv.final
        load = max(start, lv.first_send) if math.isfinite(lv.first_send) else start
        lo = max(load + warmup_s, opens)
        out: dict[str, Any] = {"level": key, "ok": lv.ok, "failed": lv.failed,
                               "failed_pct": failed_pct(lv.failed, lv.ok), "phase": MEASURED,
                               "warmup_left_s": max(0.0, lo - now), "window_s": 0.0,
                               "req_s": None, "input_tok_s": None, "output_tok_s": None}
        sample = lv.sample.view() if lv.sample is not None else np.empty((0, len(_SAMPLE)))
        sample = sample[(sample[:, S["start"]] >= lo) & (sample[:, S["ok"]] > 0)] if end is None or lo < end \
            else sample[:0]
        p_ttft, p_tpot = percentiles(sample[:, S["ttft"]], (50, 99)), percentiles(sample[:, S["tpot"]], (50, 99))
        p_e2e = percentiles(sample[:, S["e2e"]], (50, 99))
        for name, (p50, p99) in (("ttft", p_ttft), ("tpot", p_tpot), ("e2e", p_e2e)):
            out[f"{name}_p50"] = None if math.isnan(p50) else p50
            out[f"{name}_p99"] = None if math.isnan(p99) else p99
        if now < lo:
            out["phase"] = WARMING_UP
            return out
        horizon = self.horizon(now)
        hi = min(end if end is not None else now, horizon)
        lo = max(lo, self.rates.dropped_max)  # no part of the window whose records were let go
        if end is None:
            lo = max(lo, hi - LIVE_WINDOW_S)
        if not hi > lo:
            out["phase"] = MEASURING
            return out
        d = self.rates.view()
        r = window_rates(d[:, 0], d[:, 1], d[:, 3], d[:, 4], lo, hi)
        out.update(window_s=hi - lo, req_s=r.request_s, input_tok_s=r.input_tok_s, output_tok_s=r.output_tok_s)
        if end is not None and horizon >= end:  # an ended level with every record in: its figures are final
            lv.final = out
        return out


#: the figures :meth:`LiveFigures.intervals` can give (latencies in ms, rates per second)
LIVE_FIGURES = tuple(f"{m}_{stat}" for m in ("ttft", "tpot", "e2e") for stat in ("mean", "p50", "p90", "p99")) + (
    "output_tok_s", "req_s", "ok_pct")


def _intervals_of(lf: LiveFigures, key: str, start: float, end: float | None, warmup_s: float, now: float,
                  good: Any, opens: float) -> dict[str, Any]:
    lv = lf.levels.get(_level_key(key))
    if lv is None or lv.sample is None or opens == math.inf:
        return {"n": 0}
    d = lv.sample.view()
    load = max(start, lv.first_send) if math.isfinite(lv.first_send) else start
    lo = max(load + warmup_s, opens)
    # every request sent before `sent_by` has finished: those sent since may still be in flight, and a sample
    # of the short ones alone would read low
    life = d[:, S["close"]] / 1000.0
    recent = d[:, S["start"]] + life >= now - LIVE_WINDOW_S
    longest = float(np.nanmax(life[recent])) if recent.any() else 0.0
    sent_by = now - (longest if math.isfinite(longest) else 0.0) - IN_TRANSIT_S
    hi = min(end, sent_by) if end is not None else sent_by
    mine = d[(d[:, S["start"]] >= lo) & (d[:, S["start"]] < hi)]
    out: dict[str, Any] = {"n": int(len(mine)), "window_s": max(hi - lo, 0.0), "opened": lo}
    if not len(mine) or not hi > lo:
        return out
    ok = mine[:, S["ok"]] > 0
    e2e_mean = float(np.nanmean(mine[ok, S["e2e"]])) if ok.any() else math.nan
    k = intervals.block_count(hi - lo, e2e_mean / 1000.0)
    blocks = intervals.block_of(mine[:, S["start"]], lo, hi, k)
    out["blocks"] = k
    for m in ("ttft", "tpot", "e2e"):
        vals = mine[ok, S[m]]
        known = ~np.isnan(vals)
        units = intervals.Units(blocks[ok][known], k)
        out[f"{m}_mean"] = intervals.mean_interval(vals[known], units, k)
        for p, iv in zip((50, 90, 99), intervals.percentile_intervals(vals[known], units, k, (50, 90, 99))):
            out[f"{m}_p{p}"] = iv
    share = intervals.share_interval(ok.astype(float), blocks, k)
    out["ok_pct"] = Interval(100 * share.estimate, 100 * share.low, 100 * share.high)
    if good is not None:
        met = np.asarray(good(mine), float)
        judged = ~np.isnan(met)  # NaN: unjudged (no TPOT for a TPOT limit), left out of the share
        share = intervals.share_interval(met[judged], blocks[judged], k)
        out["slo_attainment_pct"] = Interval(100 * share.estimate, 100 * share.low, 100 * share.high)
    rates = lf.rates.view()
    if len(rates):
        rlo, rhi = lo, min(end if end is not None else now, lf.horizon(now))
        if rhi > rlo:
            kr = intervals.block_count(rhi - rlo, e2e_mean / 1000.0)
            req, out_tok = intervals.block_rates(rates[:, 0], rates[:, 1], [np.ones(len(rates)), rates[:, 4]],
                                                 rlo, rhi, kr)
            out["req_s"] = intervals.rate_interval(req, float(req.mean()))
            out["output_tok_s"] = intervals.rate_interval(out_tok, float(out_tok.mean()))
    return out


def level_intervals(lf: LiveFigures, key: str, start: float, end: float | None, warmup_s: float,
                    now: float | None = None, good: Any = None, opens: float = -math.inf) -> dict[str, Any]:
    """The 95 % intervals (:mod:`tokenswarm.report.intervals`, the report's own method) of a level's figures so
    far: ``{"n": requests judged, "window_s", "opened" (epoch s the level's measurement window opened), "blocks",
    "<figure>": Interval}`` for the figures of
    :data:`LIVE_FIGURES` and, with ``good`` (rows of the level's sample -> array: met every SLO, 1/0, or NaN
    for a request that cannot be judged),
    ``slo_attainment_pct``. Only requests sent before every one of them has finished are judged (the last
    lifetime's sends are still in flight, the short ones first), so the sample is not biased to short requests.
    ``good`` reads the sample's columns by :data:`S` (``start``, ``ok``, ``ttft``, ``tpot``, ``e2e``, ``close``)."""
    return _intervals_of(lf, key, start, end, warmup_s, time.time() if now is None else now, good, opens)
