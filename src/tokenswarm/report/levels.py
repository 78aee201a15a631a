"""Per-level statistics from requests.csv, computed exactly (numpy linear interpolation).

A *level* is one target concurrency (or, in rate mode, one request rate in
req/s) of a run.

* **Window.** A level's measurement window opens at its *load start*, the
  later of the level's start (run.json timeline) and the first request sent
  in it, plus the warm-up. It closes at the level's end; in a run ended by
  its ``--requests`` budget, at the last request's close (the run notices a
  moment later). Without a timeline the records' own span is used. Opening
  at the first send matters for a single ``run``: its level starts before
  the users are spawned, and counting that idle moment read throughput
  0.1-1.8 % low against vLLM bench, evalscope and the engine's own log.
* **Column names carry their unit**, as requests.csv's do: ``_ms``
  (latencies), ``_tok_s`` and ``_req_s`` (rates), ``_pct`` (shares, 0-100),
  ``_s`` (durations); counts (requests, tokens per request, requests in
  flight) are bare. :data:`tokenswarm.report.readers.LEGACY_LEVELS_COLUMNS`
  maps the names of older levels.csv files to these.
* **Latency statistics** (TTFT, TPOT, ITL, E2E: mean, std, min, max, p50,
  p90, p95, p99, p99.9; columns ``ttft_mean_ms`` ... ``e2e_p999_ms``) use
  the ``ok`` requests that started in the level after its warm-up (the
  level's *sample*).
* **Rates: one window accounting for all of them.** Every ``ok`` request,
  whichever level it started in, has a *weight* in the window: the fraction
  of its generation span, first token to last token, that lies inside the
  window (a request whose span is one instant, one output token, weighs 1
  when that instant is inside, else 0). Then, over window seconds:
  ``request_throughput_req_s`` = sum of weights; ``input_throughput_tok_s`` =
  sum of weight x prompt tokens; ``output_throughput_tok_s`` = sum of weight x
  output tokens; ``goodput_req_s`` = sum of the weights of requests meeting the
  SLOs; ``total_throughput_tok_s`` = input + output. A request inside the window counts
  whole; one crossing an edge counts for the share it spent inside, so for
  fixed lengths req/s x mean length equals the token rate exactly, and the
  figures move smoothly when requests are long next to the window.
  Why this span: output tokens are generated between the first token and the
  last, so spreading them evenly over it is the rate at which the engine
  produced them (exact when tokens are evenly spaced; DESIGN.md, "Per
  level"); input and requests use the same weight so the columns cannot
  disagree. Why weights and not counts: each request's weight integrates to
  one over time, so in a steady state the weighted sum over a window of T
  seconds is an unbiased estimate of rate x T whatever the requests' length
  (the time-average form of Little's law). Counting a request at one instant
  instead (input at its first token, requests at completion) made a level's
  columns disagree when requests run in waves: against an exact-timing
  engine (bench/truth_check.py), the req/s implied by the request, input and
  output columns read 1.87 / 1.87 / 1.95 at 4 users and 7.49 / 7.49 / 7.79 at
  16, where the engine's own log gave 1.95 and 7.79; weighted, all three read
  the truth within 0.1 %.
  ``send_rate_req_s`` is the one count of instants: requests of any status *sent*
  in the window per second, the offered load.
* **Steady or not.** ``window_lifetimes`` is the window's length in mean
  request lifetimes (window s / mean E2E s). A level whose window holds
  fewer than ``MIN_LIFETIMES`` (3) lifetimes, or whose sample has fewer than
  ``MIN_COMPLETED`` (10) completed requests, is flagged ``short_window``: its
  throughput still carries the ramp and the edges (at 1024 streams on vLLM,
  16 s requests in 30 s levels read 8,936 tok/s where 100 s levels read
  9,440) and its percentiles rest on few requests.
* **Failures.** ``failed_pct`` is the level's failed requests as a percentage
  of its finished ones (ok + failed; cancelled requests are the client's
  doing and left out), the same share ``--max-fail-ratio`` judges.
* **Pushback.** ``rate_limited_pct`` is the share of the level's requests the
  server answered with HTTP 429 or 503 (:mod:`tokenswarm.pushback`), and
  ``backoff_pct`` the share (percent) of the level's user-time spent waiting after
  them (and after runs of failures): the waits (requests.csv ``backoff_ms``) of
  the level's requests over target x level seconds (level start to end). At
  ``backoff_pct`` 30 the users sent requests 70 % of the time: the offered
  load was lower than the level says.
* **Three opinions, stream framing.** The engine's own latency histograms
  beside the client's figures (``engine_*_mean_ms``, ``outside_engine_ttft_ms``)
  and how streams were framed (``output_events_mean``, ``coalesced_pct``)
  come from :mod:`tokenswarm.report.engine`.
* **Prefix cache.** ``cache_hit_pct`` is the share (percent) of the sample's prompt
  tokens the server served from its prefix cache (usage ``cached_tokens``).
  A level is flagged ``served_from_cache`` when the cache served its prompts
  themselves, not only what they share: the ratio is at least
  ``CACHE_HIT_FLAG`` (0.5) *and* the median request left at most
  ``CACHE_REMAINDER_TOKENS`` (16, vLLM's cache block) or 10 % of its prompt
  to prefill, so the cache reached into the prompt's own, unique part. A
  repeat run of the same seed measured 0.99 (TTFT p50 90.6 -> 24.2 ms); fresh
  prompts share only the chat template, which can pass 0.5 alone when prompts
  are short (llama.cpp, SmolLM2's 30-token template before 16-token prompts:
  0.52, 22 tokens left to prefill) and is not flagged. Not flagged either
  when the workload shares prompts by design (``--prefix-len``, ``--turns``,
  a trace), which ``expect_cache`` says.
* Client self-check (:mod:`tokenswarm.selfcheck`): ``ttft_exact_1ms_pct`` is
  the share (percent) of the sample whose TTFT error bound (requests.csv
  ``ttft_error_bound_ms``) is at most 1 ms, ``ttft_error_bound_p99_ms`` the
  bound's p99 (the level's timings are exact within it), ``ttft_bound_over_5ms``
  how many may be off by more than 5 ms (each by at most its bound), ``timing_uncertain``
  set when it exceeds 5 ms; ``timing_capture_pct`` the share a packet capture timed (``--timing capture``:
  bound 0; the rest fell back to their reads' bounds), NaN for a run timed by its reads.
  ``load_shortfall_pct`` is how far the load fell short: closed loop, 1 - the requests in flight (send to
  the stream's end, and the wait before the user's next request where the server asked for one with 429/503
  or failures made it back off: the server set that pace, ``backoff_pct`` says how much; time-averaged from
  the moment every user had sent its first request, ``load_concurrency``) / target; open loop, 1 -
  requests sent in the window / rate x window (never negative);
  ``load_short`` set above 2 % or when the sends were ``late``.
* Achieved concurrency is the time-averaged number of requests in flight
  inside the window (from each request's send and close times). A closed-loop
  level holding less than ``UNDER_TARGET`` (95 %) of its target, counting the
  users' waits after 429/503 and failures as held (the server set that pace),
  is flagged ``under_target``: the client, not the server, set the pace.
* SLOs (run.json ``settings.slo``, milliseconds, any of ``ttft``, ``tpot``,
  ``e2e``, ``itl``): a request *meets the SLOs* when it is ``ok`` and its TTFT,
  TPOT and E2E are at most their limits and none of its inter-token gaps
  exceeds the ITL limit. An ``ok`` request with no TPOT (one output token, or
  its whole answer in one event: no per-token timing) neither meets nor misses
  a TPOT limit, and one with no inter-token gap neither meets nor misses an ITL
  limit: it is *unjudged*, left out of the attainment's sample (counted in
  ``slo_unjudged``) and not in the goodput. ``goodput_req_s`` is the rate (above) of requests meeting the
  SLOs; ``slo_attainment_pct`` the share (percent) of the level's sample (requests started
  after warm-up, failures included, cancelled and unjudged ones not) meeting them;
  ``meets_slo`` is true when attainment is at least ``settings.slo_attainment``
  (a fraction, default 0.99: ``slo_attainment_pct`` >= 99) and the level had no failure. Without SLOs these
  columns are empty.
* Streams that contradict themselves (:func:`tokenswarm.measure.check_usage`):
  ``token_contradictions`` counts the level's requests whose usage contradicted
  itself or the stream, or whose stream ended without a finish reason
  (requests.csv ``token_check``); the level is flagged ``usage_contradicted``.
  ``lingered_pct`` is the share of its ``ok`` requests whose server kept the
  stream open after the complete answer (the client closed it); flagged
  ``lingered`` from ``LINGER_FLAG_PCT`` (10 %).
* Clumped events. A level is flagged ``clumped`` when events arrived in clumps
  (a buffering proxy, an engine sending many tokens per event): more than
  ``CLUMP_TOKENS_PER_EVENT`` (2) output tokens per output event over its sample
  (the ``output_tokens_per_event`` of :mod:`tokenswarm.report.engine`), or an ITL p50 under
  ``CLUMP_ITL_SHARE`` (10 %) of the mean TPOT while that is at least
  ``CLUMP_MIN_TPOT_MS`` (1 ms). Its ITL then describes the server's framing, not
  the engine's per-token pace.
* Lockstep. In a closed loop, users that start together stay together when
  the server's timing is regular: their requests come in waves, each user's
  TTFT depends on the wave, and the level's figures on how it began (40
  users started at once read TTFT p50 191 ms where a spread start read 79).
  ``send_dispersion`` is the index of dispersion (variance / mean) of the
  level's sends counted in bins of a quarter of its mean lifetime: about 1
  or less for steady, independent sends, about 3/4 x users for a level in
  lockstep (all sends in one bin of four). A closed-loop level of at least
  ``LOCKSTEP_MIN_LEVEL`` (4) users whose dispersion reaches half its users,
  kept between 3 and 10 (``LOCKSTEP_DISPERSION``), is flagged ``lockstep``.
  Measured on the simulated engine: 40 users started at once read 17.7, 32
  read 26; started spread, 0.4-1.5. A server of perfectly regular timing
  keeps even a spread start's phases (2-4 at 8-32 users), under the bound.
  ``imprecise`` marks a level that reached ``--max-level-duration`` before
  its intervals were as narrow as ``--precision`` asked (run.json's timeline
  says so); ``lengthened`` one that ran past its ``--level-duration`` for
  ``--min-lifetimes`` (likewise).
* Rate mode: ``send_lag_*_ms`` is actual send minus scheduled send
  (``start_time - scheduled_time``) over the level's sample; the level is
  ``late`` when the p99 lag exceeds ``LATE_BASE_MS`` (10 ms) plus
  ``LATE_SHARE`` (5 %) of the mean inter-arrival time (1000 / rate ms): past
  that, the client shifted the arrivals by a visible part of their spacing,
  so the offered rate was not the one asked for.

The live figures (progress lines, the web UI tab) call :func:`window_weights`,
:func:`window_rates` and :func:`percentiles` from here over the records seen so
far, so they cannot define a rate differently from the final table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm import selfcheck
from tokenswarm.report import intervals
from tokenswarm.report.errors import ReportError

PERCENTILES: tuple[float, ...] = (50, 90, 95, 99, 99.9)
CI_PERCENTILES: tuple[float, ...] = (50, 90, 99)  # the percentiles that get a confidence interval
#: the rate columns that get a confidence interval
CI_RATES: tuple[str, ...] = ("request_throughput_req_s", "input_throughput_tok_s", "output_throughput_tok_s",
                             "total_throughput_tok_s", "goodput_req_s")
LATENCIES: tuple[str, ...] = ("ttft", "tpot", "itl", "e2e")  # each gets the STAT_NAMES columns, in ms
SLO_KEYS: tuple[str, ...] = ("ttft", "tpot", "e2e", "itl")  # per request
SLO_STATS: tuple[str, ...] = ("mean", "p50", "p90", "p95", "p99", "p999")  # on a level's figure: ttft_p99...
UNDER_TARGET = 0.95  # a closed-loop level holding fewer in flight than this share of its target is flagged
MIN_LIFETIMES = 3.0  # a window shorter than this many mean request lifetimes (E2E) is not steady ...
MIN_COMPLETED = 10  # ... nor one whose sample has fewer completed requests
CACHE_HIT_FLAG = 0.5  # a level whose prompts were served this much from the prefix cache, uninvited, is flagged ...
CACHE_REMAINDER_TOKENS = 16  # ... when its median request left at most this many tokens (or 10 %) to prefill
LOCKSTEP_DISPERSION = (3.0, 10.0)  # a closed-loop level whose sends per quarter lifetime vary more than half its
LOCKSTEP_MIN_LEVEL = 4  # ... users times their mean (between these bounds) is in lockstep; from 4 users on
LATE_BASE_MS = 10.0  # a rate level is late when its p99 send lag exceeds this ...
LATE_SHARE = 0.05  # ... plus this share of the mean inter-arrival time
DEFAULT_SLO_ATTAINMENT = 0.99
LINGER_FLAG_PCT = 10.0  # a level whose server kept this share of complete streams open is flagged
CLUMP_TOKENS_PER_EVENT = 2.0  # more output tokens per output event than this: clumped
CLUMP_ITL_SHARE = 0.1  # an ITL p50 under this share of the mean TPOT ...
CLUMP_MIN_TPOT_MS = 1.0  # ... of at least this: clumped
OK, CANCELLED = "ok", "cancelled"

NUMERIC: tuple[str, ...] = (
    "start_time", "level", "user", "http_status", "ttft_ms", "ttft_visible_ms", "tpot_ms", "e2e_ms", "close_ms",
    "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "output_events", "scheduled_time",
    "connect_ms", "backoff_ms", "ttft_error_bound_ms", "e2e_error_bound_ms", "lingered",
)
#: the columns the report reads; others (ids, errors, prompt ids) are skipped when loading
READ: tuple[str, ...] = (
    "start_time", "level", "status", "http_status", "ttft_ms", "tpot_ms", "e2e_ms", "close_ms", "input_tokens",
    "output_tokens", "cached_tokens", "output_events", "scheduled_time", "backoff_ms", "itl_ms",
    "ttft_error_bound_ms", "user", "worker", "token_check", "lingered", "timing_source",
)
REQUIRED: tuple[str, ...] = ("start_time", "level", "status")
#: the statistics of each latency in :data:`LATENCIES`: levels.csv has ``<latency>_<stat>_ms`` for each
STAT_NAMES: tuple[str, ...] = ("mean", "std", "min", "max", *(f"p{p:g}".replace(".", "") for p in PERCENTILES))


def pct_name(p: float) -> str:
    """``p50``, ``p99``, ``p999`` (for 99.9): the suffix of a percentile column."""
    return f"p{p:g}".replace(".", "")


# -- loading ---------------------------------------------------------------------------------
def load_requests(path: str, columns: tuple[str, ...] | None = READ) -> pd.DataFrame:
    """requests.csv as a DataFrame: numeric columns as float64 (empty cells NaN), ``status`` and
    ``itl_ms`` as strings. Only ``columns`` are read (all when None); missing optional ones are NaN.

    Raises :class:`ReportError` naming the file, column, row and value when a required column is
    missing or a numeric cell is not a number.
    """
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read requests.csv ({e})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ReportError(f"{path}: column {missing[0]!r} is missing (columns: {', '.join(header) or 'none'})")
    use = header if columns is None else [c for c in header if c in columns]
    num = {c: "float64" for c in use if c in NUMERIC}
    strs = {c: "category" if c == "worker" else object for c in use if c not in NUMERIC}
    try:
        df = pd.read_csv(path, usecols=use, dtype={**num, **strs}, keep_default_na=False,
                         na_values={c: [""] for c in num}, engine="c")
    except ValueError:  # a numeric cell that is not a number: find it and say where
        df = pd.read_csv(path, usecols=use, dtype=str, keep_default_na=False)
        for col in num:
            conv = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
            bad = conv.isna() & (df[col] != "")
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise ReportError(f"{path}: column {col!r}, data row {i + 1}: {df[col].iloc[i]!r} is not a number"
                                  ) from None
            df[col] = conv.astype("float64")
    for col in columns or ():
        if col not in df.columns:
            df[col] = "" if col in ("status", "itl_ms", "token_check") else np.nan
    return df


# -- windows ---------------------------------------------------------------------------------
@dataclass
class Window:
    """A level's measurement window, epoch seconds: [start, end), warm-up excluded."""

    level: float
    start: float  # epoch seconds, warm-up excluded
    end: float
    level_start: float
    imprecise: bool = False  # ended at --max-level-duration before --precision was reached
    lengthened: bool = False  # ran past its --level-duration for --min-lifetimes

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)


def windows_from(df: pd.DataFrame, timeline: list[dict[str, Any]] | None, warmup_s: float = 0.0,
                 warmups: Mapping[float, float] | None = None, budget: bool = False,
                 closed_loop: bool = False) -> list[Window]:
    """Measurement windows per level: from the run's timeline, else from the records' span. ``warmups``
    gives a level its own warm-up (levels of different lengths), else ``warmup_s`` applies.

    A window opens at the level's load start (its start, or the first request sent in it when that is
    later: a single run's level starts before its users are spawned) plus the warm-up, and closes at the
    level's end; in a run that ends when its request budget is spent (``budget``: ``--requests``), at the
    last request's close when that came first (the run notices the budget is spent a moment later). A timeline
    entry without an ``end`` (an interrupted run) ends at the next entry's start, or, for the last one, at
    the last request sent: what follows is requests draining, not the level's load. Two moments open it later
    when they come after that: in a timed closed loop (``closed_loop``: ``level`` users, each sending its next
    request when its last ends), the moment the last of the users that joined in the level sent its first request
    (their first sends are spread, :meth:`tokenswarm.settings.Settings.stagger_spread_s`; users carried over from
    the level before are busy from its start); and for a level below the
    one before it, the end of the last request sent before it began, since until then the earlier level's
    requests still hold the server. ReportError for a timeline entry without a numeric level or start.
    """
    out: list[Window] = []
    if timeline:
        last_close = _last_end(df) if budget else 0.0
        first_sends = _first_sends(df) if closed_loop and not budget else np.empty(0)
        for i, seg in enumerate(timeline):
            try:
                level, start = float(seg["level"]), float(seg["start"])
            except (KeyError, TypeError, ValueError):
                raise ReportError(f"run.json: timeline[{i}] = {seg!r}: needs numeric 'level' and 'start'") from None
            end = seg.get("end")
            if end is None:  # an interrupted level: it ends at the next level's start, else at its last send
                end = timeline[i + 1]["start"] if i + 1 < len(timeline) else _last_send(df, start)
            end = float(end)
            if budget and start < last_close < end:  # the budget was spent: nothing ran after the last close
                end = last_close
            load = max(start, _first_send(df, level, start, end))
            w = warmups.get(level, warmup_s) if warmups else warmup_s
            opens = load + w
            if closed_loop and not budget:
                opens = max(opens, _ramp_end(first_sends, start, end))
            if i and level < _level_of(timeline[i - 1]):
                opens = max(opens, _last_end_before(df, start))
            out.append(Window(level, min(opens, end), end, start, bool(seg.get("imprecise")),
                              bool(seg.get("lengthened"))))
        return out
    if df.empty:
        return out
    for level, g in df.groupby("level", sort=True):
        start = float(g["start_time"].min())
        end = float((g["start_time"] + g["close_ms"].fillna(0) / 1000.0).max())
        w = warmups.get(float(level), warmup_s) if warmups else warmup_s
        out.append(Window(float(level), min(start + w, end), end, start))
    return out


def _first_send(df: pd.DataFrame, level: float, after: float, before: float) -> float:
    """The first request of ``level`` sent in [after, before); ``after`` when there is none."""
    if df.empty:
        return after
    t = df["start_time"].to_numpy(float)
    mine = (df["level"].to_numpy(float) == level) & (t >= after) & (t < before)
    return float(t[mine].min()) if mine.any() else after


def _first_send_per_user(start: np.ndarray, user: np.ndarray, worker: np.ndarray) -> np.ndarray:
    """Each user's (``worker``, ``user`` number) first send among these records, epoch s; the records without a
    user number (NaN or negative: an old run folder's, or not a user's) left out; empty when none has one."""
    known = ~np.isnan(user) & (user >= 0)
    if not known.any():
        return np.empty(0)
    return pd.Series(start[known]).groupby([worker[known].astype(str), user[known]]).min().to_numpy(float)


def _first_sends(df: pd.DataFrame) -> np.ndarray:
    """Each user's first send of the run (epoch s); none without user ids (an old run folder: its windows open
    as they did, at the first send plus the warm-up)."""
    if df.empty or "user" not in df.columns:
        return np.empty(0)
    worker = df["worker"].to_numpy(object) if "worker" in df.columns else np.full(len(df), "", object)
    return _first_send_per_user(df["start_time"].to_numpy(float), _col(df, "user"), worker)


def _ramp_end(first_sends: np.ndarray, after: float, before: float) -> float:
    """When the last of the users that joined in [after, before) sent its first request (-inf: none joined)."""
    joined = first_sends[(first_sends >= after) & (first_sends < before)]
    return float(joined.max()) if joined.size else -math.inf


def _last_end_before(df: pd.DataFrame, start: float) -> float:
    """The last end (close) of the requests sent before ``start`` (-inf: none)."""
    if df.empty:
        return -math.inf
    before = df["start_time"] < start
    if not before.any():
        return -math.inf
    return float((df["start_time"][before] + df["close_ms"][before].fillna(0) / 1000.0).max())


def _level_of(seg: dict[str, Any]) -> float:
    try:
        return float(seg["level"])
    except (KeyError, TypeError, ValueError):
        return math.inf


def _last_send(df: pd.DataFrame, after: float) -> float:
    """The last send at or after ``after`` (the draining tail is not load); the last close when none."""
    sent = df["start_time"][df["start_time"] >= after] if not df.empty else df.get("start_time", pd.Series())
    return float(sent.max()) if len(sent) else _last_end(df)


def _last_end(df: pd.DataFrame) -> float:
    if df.empty:
        return 0.0
    return float((df["start_time"] + df["close_ms"].fillna(0) / 1000.0).max())


# -- inter-token latencies --------------------------------------------------------------------
def parse_itl(cells: pd.Series | np.ndarray | list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``itl_ms`` cells: (all values in cell order, how many values each cell holds).

    Fast path (about 60 ns a value): the cells are joined with single spaces and handed to pandas'
    C parser with the space as its line terminator, one value a line; the per-cell counts are the
    cells' single spaces plus one. If parsing fails or the two disagree (odd whitespace, a bad
    token), each cell is split on its own, and a token that is not a number raises
    :class:`ReportError` naming the data row and the value.
    """
    arr = np.asarray(cells, dtype=object)
    lst = arr.tolist()
    if not all(isinstance(c, str) for c in lst):
        lst = [c if isinstance(c, str) else "" for c in lst]
    counts = np.array([c.count(" ") for c in lst], dtype=np.int64) + 1
    counts[np.asarray(lst, dtype=object) == ""] = 0
    if not counts.any():
        return np.empty(0), np.zeros(arr.size, dtype=np.int64)
    data = " ".join(lst).encode("ascii", "replace")  # empty cells make blank lines, which are skipped
    try:
        values = pd.read_csv(io.BytesIO(data), header=None, names=["v"], dtype={"v": np.float64}, engine="c",
                             sep="\x1f", lineterminator=" ", quoting=csv.QUOTE_NONE, na_filter=False,
                             skip_blank_lines=True).iloc[:, 0].to_numpy()
    except (ValueError, pd.errors.ParserError):
        values = np.empty(0)
    if values.size == int(counts.sum()):
        return values, counts
    parts: list[np.ndarray] = []
    for i, c in enumerate(lst):
        toks = c.split()
        try:
            parts.append(np.array(toks, dtype=np.float64))
        except ValueError:
            bad = next(t for t in toks if not _is_number(t))
            raise ReportError(f"itl_ms, data row {i + 1}: {bad!r} is not a number") from None
        counts[i] = len(toks)
    return (np.concatenate(parts) if parts else np.empty(0)), counts


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def itl_values(series: pd.Series) -> np.ndarray:
    """All inter-token latencies of the given ``itl_ms`` cells, as one float array."""
    return parse_itl(series)[0]


# -- SLOs ------------------------------------------------------------------------------------
def check_slo(slo: Mapping[str, Any] | None, where: str = "run.json settings.slo") -> dict[str, float]:
    """The SLO limits as ``{key: ms}``; unknown keys or non-positive/non-numeric limits raise ReportError."""
    if not slo:
        return {}
    if not isinstance(slo, Mapping):
        raise ReportError(f"{where} = {slo!r}: expected an object such as {{\"ttft\": 2000, \"tpot\": 100}}")
    out: dict[str, float] = {}
    for key, limit in slo.items():
        if limit is None:
            continue
        metric, _, stat = key.partition("_")
        if key not in SLO_KEYS and not (metric in SLO_KEYS and stat in SLO_STATS):
            raise ReportError(f"{where}: unknown SLO {key!r} (known: {', '.join(SLO_KEYS)}, or one of them with "
                              f"_{'/_'.join(SLO_STATS)})")
        try:
            value = float(limit)
        except (TypeError, ValueError):
            raise ReportError(f"{where}.{key} = {limit!r}: not a number of milliseconds") from None
        if not value > 0 or math.isinf(value):
            raise ReportError(f"{where}.{key} = {limit!r}: must be a positive number of milliseconds")
        out[key] = value
    return out


def slo_mask(df: pd.DataFrame, slo: Mapping[str, float], itl: tuple[np.ndarray, np.ndarray] | None = None
             ) -> np.ndarray:
    """Per request: ``ok`` and meeting every SLO (see the module docstring for the rules); an unjudged
    request (:func:`slo_unjudged`) does not meet them."""
    return slo_masks(df, slo, itl)[0]


def slo_masks(df: pd.DataFrame, slo: Mapping[str, float], itl: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per request: (meets every SLO, unjudged). *Unjudged*: ``ok`` but without the figure a TPOT or ITL
    limit needs (no TPOT: one output token or one output event; no inter-token gap), so it neither meets nor
    misses it (module docstring)."""
    ok = np.array(df["status"].to_numpy(object) == OK, dtype=bool)
    good = ok.copy()
    unjudged = np.zeros(len(df), dtype=bool)
    for key, limit in slo.items():
        if key == "itl":
            values, counts = itl if itl is not None else parse_itl(df["itl_ms"])
            worst = np.zeros(len(df))
            has = counts > 0
            if has.any():
                starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[has]
                worst[has] = np.maximum.reduceat(values, starts)
            good = good & has & (worst <= limit)
            unjudged |= ok & ~has
            continue
        col = df[f"{key}_ms"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            good = good & (col <= limit)
        if key == "tpot":
            unjudged |= ok & np.isnan(col)
    return good, unjudged


# -- statistics ------------------------------------------------------------------------------
def _stats(values: np.ndarray, prefix: str, row: dict[str, Any]) -> None:
    if values.size:
        row[f"{prefix}_mean_ms"] = float(values.mean())
        row[f"{prefix}_std_ms"] = float(values.std())
        row[f"{prefix}_min_ms"] = float(values.min())
        row[f"{prefix}_max_ms"] = float(values.max())
        for p, q in zip(PERCENTILES, percentiles(values)):
            row[f"{prefix}_{pct_name(p)}_ms"] = float(q)
    else:
        for k in STAT_NAMES:
            row[f"{prefix}_{k}_ms"] = np.nan


def window_weights(first: np.ndarray, last: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Each request's weight in the window [lo, hi) (epoch s): the fraction of its span ``first`` .. ``last``
    (first and last output token, epoch s, arrays of one shape) inside it; a span of one instant weighs 1
    when the instant is inside, else 0. NaN times weigh 0. The module docstring says why."""
    first, last = np.asarray(first, float), np.asarray(last, float)
    span = last - first
    overlap = np.clip(np.minimum(last, hi) - np.maximum(first, lo), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(span > 0, overlap / span, ((last >= lo) & (last < hi)).astype(float))
    return np.nan_to_num(w, nan=0.0)


@dataclass
class Rates:
    """A window's rates, per second: requests, prompt and output tokens, and requests meeting the SLOs."""

    request_s: float
    input_tok_s: float
    output_tok_s: float
    goodput_req_s: float  # NaN without SLOs


def window_rates(first: np.ndarray, last: np.ndarray, n_in: np.ndarray, n_out: np.ndarray, lo: float, hi: float,
                 good: np.ndarray | None = None) -> Rates:
    """The rates of ``ok`` requests (arrays of one shape: first and last token, epoch s; prompt and output
    tokens, NaN counted as 0; ``good``: meets the SLOs) in the window [lo, hi), each request counted by its
    :func:`window_weights`. All NaN for an empty window."""
    secs = hi - lo
    if not secs > 0:
        return Rates(np.nan, np.nan, np.nan, np.nan)
    w = window_weights(first, last, lo, hi)
    return Rates(float(w.sum() / secs), float((w * np.nan_to_num(n_in)).sum() / secs),
                 float((w * np.nan_to_num(n_out)).sum() / secs),
                 float(w[good].sum() / secs) if good is not None else np.nan)


def percentiles(values: np.ndarray, ps: tuple[float, ...] = PERCENTILES) -> list[float]:
    """Exact percentiles (numpy linear interpolation) of the non-NaN values; NaN for each when there are none."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    return [float(q) for q in np.percentile(values, ps)] if values.size else [np.nan] * len(ps)


def lifetimes(window_s: float, e2e_mean_ms: float) -> float:
    """How many mean request lifetimes (E2E) the window holds; NaN when unknown."""
    if not (e2e_mean_ms > 0) or not (window_s >= 0):
        return np.nan
    return float(window_s / (e2e_mean_ms / 1000.0))


def is_short(window_lifetimes: float, completed: int) -> bool:
    """Too short to be steady: fewer than MIN_LIFETIMES lifetimes or MIN_COMPLETED completed requests."""
    return bool(completed < MIN_COMPLETED or not window_lifetimes >= MIN_LIFETIMES)


def failed_pct(failed: int, ok: int) -> float:
    """Failed requests as a percentage of finished ones (ok + failed); NaN when none finished."""
    return 100.0 * failed / (failed + ok) if failed + ok else np.nan


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else np.nan


def late_threshold_ms(rate: float) -> float:
    """The p99 send lag past which a rate level is flagged late: 10 ms + 5 % of 1000/rate ms."""
    return LATE_BASE_MS + (LATE_SHARE * 1000.0 / rate if rate > 0 else 0.0)


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    return df[name].to_numpy(float) if name in df.columns else np.full(len(df), np.nan)


def _cache_stats(cached: np.ndarray, n_in: np.ndarray, ttft: np.ndarray, row: dict[str, Any]) -> None:
    """Prefix-cache figures of a level's sample: the share of prompt tokens the server served from its cache
    (usage ``cached_tokens``, percent), how many requests hit it, and TTFT p50 (ms) of hits and misses. Empty when the
    server reported no cached tokens at all."""
    row["cache_hit_pct"] = row["cache_hits"] = row["ttft_p50_cache_hit_ms"] = row["ttft_p50_cache_miss_ms"] = np.nan
    known = ~np.isnan(cached)
    if not known.any():
        return
    c, inp = np.nan_to_num(cached), np.nan_to_num(n_in)
    row["cache_hit_pct"] = float(100.0 * c.sum() / inp.sum()) if inp.sum() else np.nan
    hit = c > 0
    row["cache_hits"] = int(hit.sum())
    for key, mask in (("ttft_p50_cache_hit_ms", hit), ("ttft_p50_cache_miss_ms", ~hit)):
        t = ttft[mask]
        t = t[~np.isnan(t)]
        row[key] = float(np.percentile(t, 50)) if t.size else np.nan


def served_from_cache(cached: np.ndarray, n_in: np.ndarray) -> bool:
    """The prefix cache served the prompts themselves (module docstring): of requests reporting both counts,
    cached / prompt tokens >= CACHE_HIT_FLAG and the median uncached remainder <= CACHE_REMAINDER_TOKENS or
    10 % of the median prompt."""
    known = ~np.isnan(cached) & ~np.isnan(n_in)
    if not known.any() or not n_in[known].sum():
        return False
    c, n = cached[known], n_in[known]
    left = float(np.median(n - c))
    return bool(c.sum() / n.sum() >= CACHE_HIT_FLAG and left <= max(CACHE_REMAINDER_TOKENS, 0.1 * np.median(n)))


def level_stats(df: pd.DataFrame, windows: list[Window], slo: Mapping[str, Any] | None = None,
                mode: str = "concurrency", slo_attainment: float = DEFAULT_SLO_ATTAINMENT,
                expect_cache: bool = False) -> pd.DataFrame:
    """One row per level (the levels.csv columns; see the module docstring for every rule). ``expect_cache``:
    the workload shares prompts by design, so a high cache-hit ratio is not flagged."""
    everything = check_slo(slo)
    limits = {k: v for k, v in everything.items() if k in SLO_KEYS}  # every request must meet these
    targets = {k: v for k, v in everything.items() if k not in SLO_KEYS}  # the level's figures must
    status = df["status"].to_numpy(object)
    is_ok = status == OK
    is_cancelled = status == CANCELLED
    is_failed = ~(is_ok | is_cancelled)
    start = _col(df, "start_time")
    lvl = _col(df, "level")
    ttft, e2e, close = _col(df, "ttft_ms"), _col(df, "e2e_ms"), _col(df, "close_ms")
    n_out, n_in = _col(df, "output_tokens"), _col(df, "input_tokens")
    sched = _col(df, "scheduled_time")
    cached = _col(df, "cached_tokens")
    backoff = _col(df, "backoff_ms")
    bound = _col(df, "ttft_error_bound_ms")
    captured = (df["timing_source"] == "capture").to_numpy(bool) if "timing_source" in df.columns else None
    user = _col(df, "user")
    worker = df["worker"].to_numpy(object) if "worker" in df.columns else np.full(len(df), "", object)
    pushback = np.isin(_col(df, "http_status"), (429.0, 503.0))
    close_end = start + np.nan_to_num(close) / 1000.0
    # a user's time given to each request: send to close, then the wait before its next that the server asked
    # for (429/503) or the backoff after failures chose; the client's own checks count the wait as load held
    held_end = close_end + np.nan_to_num(backoff) / 1000.0
    # the rates count ok requests only, by their span first token .. last token
    ok_f = (start + ttft / 1000.0)[is_ok]
    ok_e = (start + e2e / 1000.0)[is_ok]
    ok_n, ok_in = n_out[is_ok], n_in[is_ok]
    itl = parse_itl(df["itl_ms"]) if "itl_ms" in df.columns else (np.empty(0), np.zeros(len(df), np.int64))
    good, unjudged = slo_masks(df, limits, itl) if limits else (None, np.zeros(len(df), dtype=bool))
    ok_good = good[is_ok] if good is not None else None
    checks = df["token_check"].to_numpy(object) if "token_check" in df.columns else np.full(len(df), "", object)
    contradicted = np.array([bool(c) and isinstance(c, str) for c in checks], dtype=bool)
    lingered = np.nan_to_num(_col(df, "lingered")) > 0
    n_events = _col(df, "output_events")
    rows = []
    for w in windows:
        mine = lvl == w.level
        in_level = mine & (start >= w.start) if w.start > w.level_start else mine
        sample = in_level & is_ok
        secs = w.seconds
        row: dict[str, Any] = {
            "level": w.level,
            "target": w.level,
            "mode": mode,
            "requests": int(mine.sum()),
            "completed": int((mine & is_ok).sum()),
            "failed": int((mine & is_failed).sum()),
            "cancelled": int((mine & is_cancelled).sum()),
            "window_s": secs,
        }
        row["failed_pct"] = failed_pct(row["failed"], row["completed"])
        rates = window_rates(ok_f, ok_e, ok_in, ok_n, w.start, w.end, ok_good)
        row["request_throughput_req_s"] = rates.request_s
        row["send_rate_req_s"] = ((start >= w.start) & (start < w.end)).sum() / secs if secs else np.nan
        row["input_throughput_tok_s"] = rates.input_tok_s
        row["output_throughput_tok_s"] = rates.output_tok_s
        row["total_throughput_tok_s"] = rates.input_tok_s + rates.output_tok_s
        if good is not None:
            judged = in_level & ~is_cancelled & ~unjudged
            attained = (good & judged).sum() / judged.sum() if judged.any() else np.nan
            row["goodput_req_s"] = rates.goodput_req_s
            row["slo_attainment_pct"] = 100.0 * attained
            row["slo_unjudged"] = int((in_level & unjudged).sum())
            row["meets_slo"] = bool(judged.any() and attained >= slo_attainment and row["failed"] == 0)
        else:
            row["goodput_req_s"] = row["slo_attainment_pct"] = np.nan
            row["meets_slo"] = None if not targets else bool(row["completed"]) and row["failed"] == 0
        for m in LATENCIES:
            if m == "itl":
                vals = itl[0][np.repeat(sample, itl[1])] if itl[0].size else itl[0]
            else:
                vals = _col(df, f"{m}_ms")[sample]
                vals = vals[~np.isnan(vals)]
            _stats(vals, m, row)
        row["mean_input_tokens"] = _mean(n_in[sample])
        row["mean_output_tokens"] = _mean(n_out[sample])
        row["rate_limited_pct"] = (100.0 * float((pushback & mine).sum()) / row["requests"]) if row["requests"] else 0.0
        span = max(w.end - w.level_start, 0.0) * w.level if mode != "rate" else 0.0
        waited = float(np.nansum(backoff[mine])) / 1000.0
        row["backoff_pct"] = 100.0 * min(waited / span, 1.0) if span else (np.nan if waited else 0.0)
        row["window_lifetimes"] = lifetimes(secs, row["e2e_mean_ms"])
        row["short_window"] = is_short(row["window_lifetimes"], int(sample.sum()))
        _cache_stats(cached[sample], n_in[sample], ttft[sample], row)
        row["served_from_cache"] = bool(not expect_cache and served_from_cache(cached[sample], n_in[sample]))
        if secs:  # time-averaged requests in flight inside the window
            row["achieved_concurrency"] = float(
                np.clip(np.minimum(close_end, w.end) - np.maximum(start, w.start), 0, None).sum() / secs)
        else:
            row["achieved_concurrency"] = np.nan
        if mode == "rate":
            lag = (start - sched)[in_level & ~np.isnan(sched)] * 1000.0
            row["send_lag_p50_ms"] = float(np.percentile(lag, 50)) if lag.size else np.nan
            row["send_lag_p99_ms"] = float(np.percentile(lag, 99)) if lag.size else np.nan
            row["late_threshold_ms"] = late_threshold_ms(w.level)
            row["late"] = bool(lag.size and row["send_lag_p99_ms"] > row["late_threshold_ms"])
        else:
            held = float(np.clip(np.minimum(held_end, w.end) - np.maximum(start, w.start), 0, None).sum() / secs) \
                if secs else np.nan
            row["under_target"] = bool(not np.isnan(held) and held < UNDER_TARGET * w.level)
        if mode != "rate":  # the load after the ramp: from the moment every user had sent its first request
            ramp_end = _level_users_sent(start[mine], user[mine], worker[mine])
            lo = max(w.start, ramp_end)
            secs_after = w.end - lo
            row["load_concurrency"] = float(
                np.clip(np.minimum(held_end, w.end) - np.maximum(start, lo), 0, None)[mine].sum() / secs_after
            ) if secs_after > 0 else np.nan
        _client_check(row, bound[sample], mode, w.level)
        # --timing capture: the share of the sample the packet capture timed (NaN: a run that read its stamps)
        row["timing_capture_pct"] = (float(100.0 * captured[sample].mean()) if captured is not None
                                     and captured.any() and sample.any() else np.nan)
        row["send_dispersion"] = send_dispersion(start[in_level & (start < w.end)], w.start, w.end,
                                                 row["e2e_mean_ms"] / 1000.0)
        row["lockstep"] = bool(mode != "rate" and w.level >= LOCKSTEP_MIN_LEVEL
                               and row["send_dispersion"] >= lockstep_threshold(w.level))
        row["imprecise"] = bool(w.imprecise)
        row["lengthened"] = bool(w.lengthened)
        row["token_contradictions"] = int((mine & contradicted).sum())
        row["usage_contradicted"] = bool(row["token_contradictions"])
        n_ok = int((mine & is_ok).sum())
        row["lingered_pct"] = 100.0 * float((mine & is_ok & lingered).sum()) / n_ok if n_ok else np.nan
        row["lingered"] = bool(n_ok and row["lingered_pct"] >= LINGER_FLAG_PCT)
        tokens_sum, events_sum = float(np.nansum(n_out[sample])), float(np.nansum(n_events[sample]))
        per_event = tokens_sum / events_sum if events_sum > 0 else np.nan
        row["clumped"] = is_clumped(per_event, row["itl_p50_ms"], row["tpot_mean_ms"])
        _intervals(row, w, start, sample, in_level & ~is_cancelled & ~unjudged, good, itl, df,
                   (ok_f, ok_e, ok_in, ok_n, ok_good))
        for key, limit in targets.items():  # a level's figure against its target: the point estimate
            row["meets_slo"] = bool(row["meets_slo"] and row.get(f"{key}_ms", np.nan) <= limit)
        row["slo_verdict"] = slo_verdict(row, limits, targets, slo_attainment) if everything else None
        rows.append(row)
    return pd.DataFrame(rows)


def is_clumped(tokens_per_event: float, itl_p50_ms: float, tpot_mean_ms: float) -> bool:
    """Did a level's output events arrive in clumps (module docstring: more than :data:`CLUMP_TOKENS_PER_EVENT`
    output tokens per event, or an ITL p50 under :data:`CLUMP_ITL_SHARE` of a mean TPOT of at least
    :data:`CLUMP_MIN_TPOT_MS`)? NaN figures decide nothing."""
    few = tokens_per_event > CLUMP_TOKENS_PER_EVENT  # False for NaN
    bunched = tpot_mean_ms >= CLUMP_MIN_TPOT_MS and itl_p50_ms < CLUMP_ITL_SHARE * tpot_mean_ms
    return bool(few or bunched)


def _level_users_sent(start: np.ndarray, user: np.ndarray, worker: np.ndarray) -> float:
    """Epoch seconds when the last of a level's users (a worker's user number) sent its first request of the
    level (-inf when the records do not say which user sent them)."""
    firsts = _first_send_per_user(start, user, worker)
    return float(firsts.max()) if firsts.size else -math.inf


def _client_check(row: dict[str, Any], bound: np.ndarray, mode: str, target: float) -> None:
    """The self-check's two measured figures and flags (:mod:`tokenswarm.selfcheck`): ``ttft_exact_1ms_pct``,
    ``ttft_error_bound_p99_ms``, ``timing_uncertain`` from the sample's TTFT error bounds (NaN / False in
    a run folder without them); ``load_shortfall_pct`` (closed loop: achieved concurrency against the
    target; open loop: sends in the window against the rate's schedule) and ``load_short``."""
    known = bound[~np.isnan(bound)]
    row["ttft_exact_1ms_pct"] = float(100.0 * (known <= selfcheck.EXACT_MS).mean()) if known.size else np.nan
    row["ttft_error_bound_p99_ms"] = float(np.percentile(known, 99)) if known.size else np.nan
    row["ttft_bound_over_5ms"] = int((known > selfcheck.UNCERTAIN_MS).sum())
    row["timing_uncertain"] = selfcheck.timing_verdict(row["ttft_error_bound_p99_ms"], row["ttft_exact_1ms_pct"])[0]
    noise = 0.0
    if mode == "rate":
        asked = target * row["window_s"]
        sent = row["send_rate_req_s"] * row["window_s"]
        short = 100.0 * (1.0 - sent / asked) if asked else np.nan
        noise = selfcheck.arrival_noise_pct(asked)  # random arrivals alone fall this short
    else:
        ach = row.get("load_concurrency", row["achieved_concurrency"])
        short = 100.0 * (1.0 - ach / target) if target and not np.isnan(ach) else np.nan
    row["load_shortfall_pct"] = max(short, 0.0) if not np.isnan(short) else np.nan
    row["load_short"] = selfcheck.load_verdict(row["load_shortfall_pct"], bool(row.get("late", False)), noise)[0]


HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"


def slo_verdict(row: Mapping[str, Any], limits: Mapping[str, float], targets: Mapping[str, float],
                slo_attainment: float) -> str:
    """A levels.csv row's verdict on its SLOs, from its interval columns (:func:`judge`)."""
    figures: dict[str, intervals.Interval] = {}
    for key in [*targets, *(["slo_attainment"] if limits else [])]:
        name = f"{key}_pct" if key == "slo_attainment" else f"{key}_ms"
        low, high = intervals.ci_columns(name)
        figures[key] = intervals.Interval(float(row.get(name, np.nan)), float(row.get(low, np.nan)),
                                          float(row.get(high, np.nan)))
    return judge(figures, targets, slo_attainment if limits else None, int(row.get("failed", 0) or 0))


def judge(figures: Mapping[str, intervals.Interval], targets: Mapping[str, float], slo_attainment: float | None,
          failed: int = 0) -> str:
    """Does a level meet its SLOs, with its 95 % intervals? ``figures``: the intervals by SLO key (``ttft_p99``;
    ``slo_attainment`` in percent when ``slo_attainment``, a fraction, is required). ``holds`` when every
    target's interval lies at or below its limit (and the attainment interval at or above the share required)
    and nothing failed; ``fails`` when a request failed or any interval lies wholly on the wrong side; else
    ``undecided`` (more requests would tell). A bound the data cannot give (a p99's upper bound from too few
    requests) decides nothing. The report (:func:`slo_verdict`) and the live capacity search judge alike."""
    if failed:
        return FAILS
    checks = [(figures.get(k, intervals.NONE), limit, True) for k, limit in targets.items()]
    if slo_attainment is not None:
        checks.append((figures.get("slo_attainment", intervals.NONE), 100.0 * slo_attainment, False))
    decided = True
    for iv, limit, lower_is_better in checks:
        if (iv.low > limit) if lower_is_better else (iv.high < limit):
            return FAILS
        if not ((iv.high <= limit) if lower_is_better else (iv.low >= limit)):  # NaN: unknown, undecided
            decided = False
    return HOLDS if decided else UNDECIDED


def lockstep_threshold(users: float) -> float:
    """The send dispersion from which a closed-loop level of ``users`` is in lockstep: half its users, kept
    within :data:`LOCKSTEP_DISPERSION` (all of a level's sends in one bin of four give about 3/4 of its users)."""
    lo, hi = LOCKSTEP_DISPERSION
    return float(min(max(users / 2.0, lo), hi))


def send_dispersion(sends: np.ndarray, lo: float, hi: float, lifetime_s: float) -> float:
    """Index of dispersion (variance / mean) of the sends in [lo, hi) counted in bins of a quarter
    ``lifetime_s``, the larger of two binnings half a bin apart (a wave on a bin's edge splits in two); NaN with
    fewer than 8 bins or no sends (see the module docstring)."""
    if not (lifetime_s > 0) or not hi > lo:
        return np.nan
    width = lifetime_s / 4.0
    nbins = int((hi - lo) // width) - 1
    if nbins < 8:
        return np.nan
    out = np.nan
    for shift in (0.0, width / 2.0):
        at = np.floor((sends - lo - shift) / width).astype(np.int64)
        counts = np.bincount(at[(at >= 0) & (at < nbins)], minlength=nbins)[:nbins]
        mean = counts.mean()
        if mean > 0:
            d = float(counts.var(ddof=1) / mean)
            out = d if np.isnan(out) else max(out, d)
    return out


def _intervals(row: dict[str, Any], w: Window, start: np.ndarray, sample: np.ndarray, judged: np.ndarray,
               good: np.ndarray | None, itl: tuple[np.ndarray, np.ndarray], df: pd.DataFrame,
               ok: tuple[np.ndarray, ...]) -> None:
    """The level's 95 % confidence intervals (:mod:`tokenswarm.report.intervals`): ``<figure>_ci_low`` and
    ``<figure>_ci_high`` beside each latency's mean and p50/p90/p99, each rate, and the SLO attainment;
    ``ci_blocks``, the number of time blocks they rest on."""
    k = intervals.block_count(w.seconds, row["e2e_mean_ms"] / 1000.0)
    row["ci_blocks"] = k
    blocks = intervals.block_of(start, w.start, w.end, k)

    def put(name: str, iv: intervals.Interval) -> None:
        low, high = intervals.ci_columns(name)
        row[low], row[high] = iv.low, iv.high

    for m in LATENCIES:
        if m == "itl":  # a request's gaps move to a block together
            vals = itl[0][np.repeat(sample, itl[1])] if itl[0].size else itl[0]
            units = intervals.Units(blocks[sample], k, itl[1][sample])
        else:
            vals = _col(df, f"{m}_ms")[sample]
            known = ~np.isnan(vals)
            vals, units = vals[known], intervals.Units(blocks[sample][known], k)
        put(f"{m}_mean_ms", intervals.mean_interval(vals, units, k))
        known_q = [row[f"{m}_{pct_name(p)}_ms"] for p in CI_PERCENTILES]
        for p, iv in zip(CI_PERCENTILES, intervals.percentile_intervals(vals, units, k, CI_PERCENTILES, known_q)):
            put(f"{m}_{pct_name(p)}_ms", iv)
    first, last, n_in, n_out, good_ok = ok
    near = (last >= w.start) & (first <= w.end)
    amounts = [np.ones(int(near.sum())), n_in[near], n_out[near]]
    if good_ok is not None:
        amounts.append(good_ok[near].astype(float))
    per_block = intervals.block_rates(first[near], last[near], amounts, w.start, w.end, k) if w.seconds else []
    if len(per_block):
        req, inp, out = per_block[:3]
        for name, rates in (("request_throughput_req_s", req), ("input_throughput_tok_s", inp),
                            ("output_throughput_tok_s", out), ("total_throughput_tok_s", inp + out),
                            ("goodput_req_s", per_block[3] if good_ok is not None else None)):
            put(name, intervals.rate_interval(rates, row[name]) if rates is not None else intervals.NONE)
    else:
        for name in CI_RATES:
            put(name, intervals.NONE)
    if good is not None and judged.any():
        iv = intervals.share_interval(good[judged], blocks[judged], k)
        put("slo_attainment_pct", intervals.Interval(100 * iv.estimate, 100 * iv.low, 100 * iv.high))
    else:
        put("slo_attainment_pct", intervals.NONE)
