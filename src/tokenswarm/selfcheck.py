"""Client self-check: what the load generator knows of its own timings and of the load it offered.

Two measured verdicts per level, each with its own flag and advice:

* **Timings exact within X ms** (``timing_uncertain`` when not). Every request carries a bound on its own
  TTFT error (requests.csv ``ttft_error_bound_ms``; :meth:`tokenswarm.client.Connection.recv`): 0 when the
  event that set it ended a kernel-stamped read, else how much earlier than its stamp its bytes may have
  come. X is the level's p99 of that bound; a level whose X exceeds ``UNCERTAIN_MS`` (5 ms) is flagged.
  ``ttft_exact_1ms_pct`` is the share of its requests whose bound is at most ``EXACT_MS`` (1 ms).
* **Load as asked, or short by N %** (``load_short``). Closed loop: the requests in flight inside the
  window (send to the kernel's stamp of the stream's end: the server's view) against the target; open
  loop: requests sent against those scheduled, and late sends (:mod:`tokenswarm.report.levels`). Short
  by more than ``SHORT_PCT`` (2 %), or late, is flagged.

Why not CPU and event-loop lag: they were wrong both ways. A client in a half-core quota ran at its limit
and its timings were exact (the kernel stamps reads whatever the process is doing); what suffered was the
load (fewer requests than asked). 1024 users on a master and two workers read "saturated" while their
TTFT error p99 was 4.4 ms. And beside busy processes the heuristic could not say which requests were off.
CPU and lag are still sampled (client_health.csv, each load-generating process every second) and reported
beside the verdicts as evidence: :func:`strain` says which thresholds a level's samples crossed.

Pure: the samplers live in the load generator.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

LAG_INTERVAL_S = 0.05  # the lag sampler's sleep
REPORT_S = 1.0  # samples are summarised (max lag, CPU) this often
CPU_SATURATED_PCT = 90.0
LAG_SATURATED_MS = 20.0
MIN_BAD_SAMPLES = 2
CSV_COLUMNS = ("time", "worker", "cpu_pct", "loop_lag_p99_ms", "loop_lag_max_ms")
EXACT_MS = 1.0  # a request whose TTFT error bound is at most this counts as exact
UNCERTAIN_MS = 5.0  # a level whose TTFT error bound p99 exceeds this is flagged timing_uncertain
SHORT_PCT = 2.0  # a level whose load fell short by more than this (percent) is flagged load_short
LIVE_MIN_REQUESTS = 100  # the live checks judge a level from this many requests ...
LIVE_MIN_WINDOW_S = 5.0  # ... over at least this many seconds after its warm-up
LIVE_CHECK_S = 5.0  # the live checks run this often
LIVE_KEEP = 20_000  # the live checks read a level's most recent requests, this many at most
LIVE_USER_KEEP = 200  # ... and each user's, this many at most
LIVE_JUDGE_S = 10.0  # a closed-loop level's load is judged over its latest this many seconds (a check's cost
# follows the requests in them, not the level's length: 2048 users x 200 requests stalled the loop 130 ms)
TIMING_ADVICE = ("time the responses from a packet capture (--timing capture: exact however late the client reads; "
                 "root or CAP_NET_RAW, a loopback target), raise the client's scheduling priority (--priority high, "
                 "or realtime where permitted), keep busy processes off its cores, or add workers (--workers N)")
LOAD_ADVICE = ("give the client more CPU (a larger CPU limit or quota, fewer neighbours) or add workers "
               "(--workers N, or more worker processes/pods)")


def timing_verdict(bound_p99_ms: float, exact_pct: float, over: int | None = None) -> tuple[bool, str]:
    """(uncertain, one line) from a level's TTFT error-bound p99 (ms), the share (percent) of its requests
    exact within :data:`EXACT_MS` and, where known, how many requests have a bound over
    :data:`UNCERTAIN_MS` (those may be off by more; each carries its bound); NaN figures (no request) give
    (False, "")."""
    if bound_p99_ms != bound_p99_ms:
        return False, ""
    line = (f"timings exact within {bound_p99_ms:.2f} ms (TTFT error bound p99; {exact_pct:.1f} % of requests "
            f"exact within {EXACT_MS:g} ms")
    if over:
        line += f"; {over} may be off by more than {UNCERTAIN_MS:g} ms, each by at most its bound"
    line += ")"
    if bound_p99_ms > UNCERTAIN_MS:
        return True, f"{line}: over {UNCERTAIN_MS:g} ms, the client's own delay is in these timings"
    return False, line


def arrival_noise_pct(asked: float) -> float:
    """How far short (percent of ``asked``) an open-loop level's count of sends in its window may fall by the
    arrivals' own chance, the client keeping up: 3 standard deviations of a Poisson count of mean ``asked``
    (sqrt(asked)), plus 1 for a window's edges. Under Poisson arrivals a count falls below that with
    probability about 0.1 % (measured with 20,000 seeded draws per mean: 0 to 0.11 % for means 5 to 2,000;
    tests/unit/test_selfcheck.py holds it under 0.3 %). It is wide for short levels: 81 % at 5 req/s over a
    3.2 s window (16 asked), 9.6 % at 1,000 asked; there a client that cannot keep up shows as ``late`` (its
    sends behind their scheduled moments) rather than by the count. NaN for nothing asked."""
    return 100.0 * (3.0 * math.sqrt(asked) + 1.0) / asked if asked > 0 else float("nan")


def load_verdict(shortfall_pct: float, late: bool = False, noise_pct: float = 0.0) -> tuple[bool, str]:
    """(short, one line) from a level's load shortfall (percent; closed loop: in flight vs target, open
    loop: sent vs scheduled) and whether its sends were late; NaN shortfall and not late give (False, "").
    Short is more than ``SHORT_PCT`` and more than ``noise_pct`` (an open loop's
    :func:`arrival_noise_pct`: random arrivals alone fall short by that much)."""
    if shortfall_pct != shortfall_pct and not late:
        return False, ""
    bar = max(SHORT_PCT, noise_pct) if noise_pct == noise_pct else SHORT_PCT
    short = shortfall_pct == shortfall_pct and shortfall_pct > bar
    if not (short or late):
        return False, f"load as asked (short by {max(shortfall_pct, 0.0):.1f} %)"
    why = [f"short by {shortfall_pct:.1f} %"] if short else []
    if late:
        why.append("sends late")
    return True, "load not as asked: " + ", ".join(why)


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


def strain(samples: list[Sample]) -> tuple[bool, str]:
    """Evidence, not a verdict: did these samples (one level, any workers) cross the CPU or loop-lag
    thresholds? Returns (crossed, one-line account of what crossed)."""
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


class LiveCheck:
    """The two verdicts while a test runs, from the finished requests' rows (requests.csv strings): per
    level (its latest :data:`LIVE_KEEP` requests, so a check costs the same late in a long run), once it
    has :data:`LIVE_MIN_REQUESTS` requests after its warm-up over at least :data:`LIVE_MIN_WINDOW_S`. The
    window ends where every request that began in it has most likely reported (now, less the longest
    send-to-close time seen, less ``transit_s`` for records on their way), so requests still in flight do
    not read as missing load."""

    def __init__(self, transit_s: float = 2.0) -> None:
        from tokenswarm.requestscsv import COLUMN_INDEX

        self._i = {k: COLUMN_INDEX[k] for k in ("level", "status", "start_time", "close_ms", "ttft_error_bound_ms",
                                                "worker", "user", "backoff_ms")}
        self.transit_s = transit_s
        #: level -> its most recent requests' (send, close, bound ms or NaN)
        self.levels: dict[str, deque[tuple[float, float, float]]] = {}
        self.first_send: dict[str, dict[tuple[str, str], float]] = {}  # level -> user -> its first send
        #: level -> user -> its most recent requests' (send, close plus the wait before its next after a 429/503
        #: or failures: the server set that pace), in the order they finished
        self.user_requests: dict[str, dict[tuple[str, str], deque[tuple[float, float]]]] = {}

    def add(self, rows: list[list[str]]) -> None:
        i = self._i
        for r in rows:
            status = r[i["status"]]
            if status == "cancelled" or not r[i["close_ms"]]:
                continue
            start = float(r[i["start_time"]])
            firsts = self.first_send.setdefault(r[i["level"]], {})
            who = (r[i["worker"]], r[i["user"]])
            if start < firsts.get(who, float("inf")):
                firsts[who] = start
            bound = r[i["ttft_error_bound_ms"]] if status == "ok" else ""
            self.levels.setdefault(r[i["level"]], deque(maxlen=LIVE_KEEP)).append(
                (start, start + float(r[i["close_ms"]]) / 1000.0, float(bound) if bound else float("nan")))
            wait_s = float(r[i["backoff_ms"]]) / 1000.0 if r[i["backoff_ms"]] else 0.0
            self.user_requests.setdefault(r[i["level"]], {}).setdefault(who, deque(maxlen=LIVE_USER_KEEP)).append(
                (start, start + float(r[i["close_ms"]]) / 1000.0 + wait_s))

    def _closed_loop_short(self, level: str, since: float, now: float, target: float) -> float:
        """Percent by which the requests in flight fell short of ``target`` users, NaN until it can be known. A
        user waiting before its next request because the server answered 429/503 (or failed, and it backs off)
        holds its place: the server set that pace, not the client.

        The window opens once every user has sent its first request of the level (and not before ``since``)
        and closes at the earliest of the users' latest known closes: a user's requests are sequential and
        its records arrive in order, so up to its latest close everything it did is known, and nothing after
        it is guessed. (Judging up to "now less the longest lifetime seen" instead read the requests still
        in flight as missing load: early in a level only its short requests have finished, and at 2048
        streams on a real engine it said "short by 100 %" of a level that was short by 0.0 %.) No verdict
        until every one of the ``target`` users has finished a request of the level."""
        users = self.user_requests.get(level, {})
        if not target or len(users) < target:
            return float("nan")
        lo = max([since, *self.first_send.get(level, {}).values()])
        hi = min(now, *(reqs[-1][1] for reqs in users.values()))  # a wait may reach past now
        # the latest LIVE_JUDGE_S seconds; and where a user's oldest requests were let go (it keeps its latest
        # LIVE_USER_KEEP), the window opens at its oldest kept send: from there on, everything it did is known
        lo = max([lo, hi - LIVE_JUDGE_S, *(reqs[0][0] for reqs in users.values() if len(reqs) == reqs.maxlen)])
        if hi - lo < LIVE_MIN_WINDOW_S:
            return float("nan")
        held = 0.0
        for reqs in users.values():  # newest first: a user's requests end in order, so stop at the window's start
            for s, c in reversed(reqs):
                if c <= lo:
                    break
                held += max(0.0, min(c, hi) - max(s, lo))  # (a request after hi: nothing)
        return max(0.0, 100.0 * (1.0 - held / (hi - lo) / target))

    def check(self, level: str, since: float, now: float, target: float, mode: str = "concurrency"
              ) -> dict[str, object] | None:
        """{"requests", "window_s", "ttft_exact_1ms_pct", "ttft_error_bound_p99_ms", "timing_uncertain",
        "timing", "load_shortfall_pct", "load_short", "load"} of ``level`` (requests.csv's spelling) over its
        requests sent after epoch ``since``; None until there are enough."""
        recs = [x for x in self.levels.get(level, ()) if x[0] >= since]
        if recs and len(recs) == LIVE_KEEP:  # only the most recent ones are kept: the window starts at them
            since = max(since, min(x[0] for x in recs))
        if len(recs) < LIVE_MIN_REQUESTS:
            return None
        life = max(c - s for s, c, _b in recs)
        hi = now - life - self.transit_s
        window = hi - since
        if window < LIVE_MIN_WINDOW_S:
            return None
        bounds = sorted(b for _s, _c, b in recs if b == b)
        if bounds:
            p99 = _percentile(bounds, 99.0)
            exact = 100.0 * sum(1 for b in bounds if b <= EXACT_MS) / len(bounds)
        else:
            p99 = exact = float("nan")
        noise = 0.0
        if mode == "rate":
            sent = sum(1 for s, _c, _b in recs if s < hi)
            short = 100.0 * (1.0 - sent / (target * window)) if target else float("nan")
            noise = arrival_noise_pct(target * window)
        else:
            short = self._closed_loop_short(level, since, now, target)
        short = max(short, 0.0) if short == short else short
        uncertain, timing = timing_verdict(p99, exact, sum(1 for b in bounds if b > UNCERTAIN_MS))
        low, load = load_verdict(short, noise_pct=noise)
        def num(x: float) -> float | None:
            return None if x != x else x  # run.json is strict JSON: no NaN

        return {"requests": len(recs), "window_s": round(window, 3), "ttft_exact_1ms_pct": num(exact),
                "ttft_error_bound_p99_ms": num(p99), "timing_uncertain": uncertain, "timing": timing,
                "load_shortfall_pct": num(short), "load_short": low, "load": load}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of an ascending list."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
