"""Synthetic run folders (requests.csv + run.json) with a known shape, for tests, benchmarks and demos.

:func:`write_run` models an engine with ``capacity`` concurrent streams: up
to it, each added stream adds throughput and TPOT grows a little; past it,
requests queue, so output throughput stays flat and TTFT grows with the
queue: the curve real engines show, with the knee at ``capacity``. In
closed-loop mode ``level`` users (``client_limit`` when the level is above it:
a client that cannot keep up, which the report flags as under target) send
requests back to back; users persist across levels, as in a Locust run, so a
level ends when its first user has sent its share and the others' last
requests run on into the next level. In rate mode arrivals are scheduled
every ``1/rate`` s and sent ``send_lag_ms`` (median, lognormal) late; past
the engine's request rate (``capacity`` streams / base E2E) they queue, so
TTFT grows through the level and output throughput stays at capacity. ITLs
come from a pool of sequences per level so a million rows generate in seconds.
Nothing here imports locust; the columns are :data:`tokenswarm.requestscsv.COLUMNS`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm import runfolder
from tokenswarm.requestscsv import COLUMNS

FAILURE_KINDS = ("http_error", "timeout", "disconnect")
POOL = 512  # distinct ITL sequences per level


def write_run(run_dir: str, levels: Sequence[float] = (1, 2, 4, 8, 16), mode: str = "concurrency",
              requests_per_level: int | Sequence[int] | None = None, capacity: float = 8,
              itl: tuple[int, int] = (16, 64),
              ttft_ms: float = 40.0, tpot_ms: float = 8.0, fail_share: float = 0.0, cancel_share: float = 0.0,
              client_limit: float | None = None, send_lag_ms: float = 0.5, warmup_s: float = 0.0,
              cached_share: float | None = None, input_len: tuple[int, int] = (100, 2000),
              slo: dict[str, float] | None = None, settings: dict[str, Any] | None = None, complete: bool = True,
              seed: int = 0, t0: float = 1_790_000_000.0) -> dict[str, Any]:
    """Write requests.csv and run.json into ``run_dir`` (created); returns run.json's content.

    ``requests_per_level`` defaults to 20 per user in closed loop (fewer makes each user's cycles line
    up with the level's edges and the throughput noisy) and to 10 s worth of requests in rate mode.
    ``input_len``: prompt lengths are drawn uniformly in [lo, hi). ``cached_share``: the share of each ok
    request's prompt tokens reported as served from the prefix cache (None: the server reports none).
    """
    os.makedirs(run_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    if requests_per_level is None:  # 20 per user (closed loop), or 10 s worth (rate)
        per_level = [int(20 * x) if mode != "rate" else max(20, int(10 * x)) for x in levels]
    elif isinstance(requests_per_level, (int, np.integer)):
        per_level = [int(requests_per_level)] * len(levels)
    else:
        per_level = [int(x) for x in requests_per_level]
    frames, timeline = [], []
    lo_itl, hi_itl = itl
    next_free = 0.0  # rate mode: when the engine can admit the next request
    free = np.empty(0)  # closed loop: when each user has finished its last request
    for level, k in zip(levels, per_level):
        load = float(level)
        if mode == "concurrency" and client_limit is not None:
            load = min(load, client_limit)
        tpot = tpot_ms * (1.0 + 0.05 * min(load, capacity))
        pool_len = rng.integers(lo_itl, hi_itl + 1, POOL)
        pool_vals = [tpot * rng.gamma(16.0, 1 / 16.0, m) for m in pool_len]
        pool_str = np.array([" ".join("%.3f" % x for x in v) for v in pool_vals], dtype=object)
        pool_sum = np.array([v.sum() for v in pool_vals])
        e2e_base = ttft_ms + tpot * (lo_itl + hi_itl) / 2.0
        if mode == "rate":
            capacity_rate = capacity / (e2e_base / 1000.0)  # req/s the engine can serve
            duration = k / float(level)
            i = np.arange(k)
            sched = t0 + i / float(level)
            start = sched + rng.lognormal(np.log(max(send_lag_ms, 1e-3)), 0.5, k) / 1000.0
            # one queue for the whole run: the engine admits a request every 1/capacity_rate s at most
            gap = 1.0 / capacity_rate
            admit = i * gap + np.maximum(next_free, np.maximum.accumulate(start - i * gap))
            queue = (admit - start) * 1000.0
            next_free = float(admit[-1]) + gap
        else:
            queue = max(load / capacity - 1.0, 0.0) * e2e_base
            sched = np.full(k, np.nan)
        pick = rng.integers(0, POOL, k)
        n_itl = pool_len[pick]
        ttft = ttft_ms * rng.lognormal(0.0, 0.2, k) + queue * (rng.uniform(0.5, 1.5, k) if mode != "rate" else 1.0)
        e2e = ttft + pool_sum[pick]
        status = np.full(k, "ok", dtype=object)
        u = rng.random(k)
        fail = u < fail_share
        status[fail] = rng.choice(FAILURE_KINDS, int(fail.sum()))
        cancel = (u >= fail_share) & (u < fail_share + cancel_share)
        status[cancel] = "cancelled"
        ok = status == "ok"
        out_tok = n_itl + 1
        n_in = rng.integers(input_len[0], input_len[1], k) if input_len[1] > input_len[0] else \
            np.full(k, input_len[0])
        close = np.where(ok, e2e + 0.5, np.where(status == "cancelled", e2e / 2, 3.0))
        user = np.arange(k) % max(int(level), 1)
        if mode != "rate":  # closed loop: `users` users, each sending its requests back to back
            users = max(min(int(load), k), 1)
            user = np.arange(k) % users
            order = np.argsort(user, kind="stable")
            busy = close[order] / 1000.0
            done = np.cumsum(busy)
            first = np.searchsorted(user[order], np.arange(users))
            offset = np.concatenate(([0.0], done))[first]  # time the user's earlier requests took
            # users already running finish their last request first; new ones are spawned at once
            begin = t0 + rng.uniform(0.0, 0.01, users)
            carried = min(users, free.size)
            begin[:carried] = np.maximum(begin[:carried], free[:carried])
            start = np.empty(k)
            start[order] = begin[user[order]] + (done - busy) - offset[user[order]]
            totals = np.bincount(user, weights=close / 1000.0, minlength=users)
            duration = float((begin - t0 + totals).min())  # the level ends when the first user runs out
            free = begin + totals
        worker = rng.integers(0, 4, k)
        if mode != "rate":  # a closed-loop user belongs to one worker
            worker = user % 4
        frame = pd.DataFrame({
            "request_id": [f"r{level:g}-{i}" for i in range(k)],
            "start_time": start,
            "level": float(level),
            "worker": worker.astype(str),
            "user": user,
            "status": status,
            "http_status": np.where(status == "http_error", 500, 200),
            "ttft_ms": np.where(ok, ttft, np.nan),
            "ttft_visible_ms": np.where(ok, ttft, np.nan),
            "tpot_ms": np.where(ok, (e2e - ttft) / (out_tok - 1), np.nan),
            "e2e_ms": np.where(ok, e2e, np.nan),
            "close_ms": close,
            "ttft_error_bound_ms": np.where(ok, 0.0, np.nan),  # a synthetic client is exact
            "e2e_error_bound_ms": np.where(ok, 0.0, np.nan),
            "timing_source": "read",
            "input_tokens": pd.array(n_in, dtype="Int64"),
            "output_tokens": pd.array(out_tok, dtype="Int64"),
            "reasoning_tokens": "",
            "cached_tokens": np.where(ok, np.round(n_in * cached_share), np.nan) if cached_share is not None
            else "",
            "token_source": np.where(ok, "usage", ""),
            "output_tokens_tokenizer": "",
            "output_events": np.where(ok, out_tok, 0),
            "output_kind": np.where(ok, "content", ""),
            "finish_reason": np.where(ok, "length", ""),
            "token_check": "",
            "lingered": "",
            "scheduled_time": sched,
            "connect_ms": "",
            "request_bytes": "",
            "prompt_id": rng.integers(0, 10_000, k).astype(str),
            "prefix_id": "",
            "conversation_id": "",
            "turn": "",
            "backoff_ms": "",
            "error": np.where(ok | cancel, "", "synthetic failure"),
            "itl_ms": np.where(ok, pool_str[pick], ""),
        })
        frame.loc[~ok, "output_tokens"] = pd.NA
        frames.append(frame)
        timeline.append({"level": level, "start": t0, "end": t0 + duration})
        t0 += duration
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values("start_time", kind="stable")
    for col in ("start_time", "scheduled_time"):
        df[col] = [("%.6f" % x) if x == x else "" for x in df[col].to_numpy(float)]
    df[list(COLUMNS)].to_csv(os.path.join(run_dir, runfolder.REQUESTS_CSV), index=False, float_format="%.3f")
    s: dict[str, Any] = {"engine": "sim", "model": "synthetic", "warmup_s": warmup_s, "slo": slo,
                         "rates" if mode == "rate" else "levels": list(levels)}
    s.update(settings or {})
    meta = {"run_id": os.path.basename(os.path.normpath(run_dir)), "complete": complete, "mode": mode,
            "timeline": timeline, "settings": s, "workers": [{"id": "local"}]}
    runfolder.write_json(os.path.join(run_dir, runfolder.RUN_JSON), meta)
    return meta


def stochastic_level(seed: int, rate: float = 20.0, seconds: float = 30.0, warmup_s: float = 3.0,
                     ttft_ms: float = 100.0, tpot_ms: float = 10.0, sigma_state: float = 0.3,
                     sigma_request: float = 0.2, tau_s: float = 0.25, output_tokens: int = 32,
                     scale_tpot: float = 1.0, t0: float = 1_790_000_000.0) -> tuple[pd.DataFrame, Any]:
    """One open-loop level with a known truth, for measuring intervals and verdicts: Poisson sends at ``rate``
    req/s over ``warmup_s + seconds``; each request's TTFT is ``ttft_ms * exp(a(t) + e)`` and its TPOT
    ``tpot_ms * scale_tpot * exp(b(t) + e')``, where ``a`` and ``b`` are the server's state, a stationary
    Gaussian (Ornstein-Uhlenbeck) process of sd ``sigma_state`` and correlation time ``tau_s`` (neighbouring
    requests are alike: the dependence intervals must carry), and ``e``, ``e'`` each request's own noise (sd
    ``sigma_request``; ``sigma_state`` 0: independent requests). Sends do not depend on the state (open loop),
    so a request's TTFT and TPOT are lognormal with sigma ``sqrt(sigma_state^2 + sigma_request^2)``:
    :func:`stochastic_truth` gives the true figures. Returns (requests as :func:`tokenswarm.report.levels
    .load_requests` reads them, the level's :class:`~tokenswarm.report.levels.Window` after its warm-up)."""
    from tokenswarm.report.levels import Window

    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * (seconds + warmup_s)))
    t = np.sort(rng.uniform(t0 - warmup_s, t0 + seconds, n))
    state = np.zeros((n, 2))
    prev = rng.normal(0.0, sigma_state, 2)
    last_t = t[0] if n else t0
    for i in range(n):
        r = math.exp(-(t[i] - last_t) / tau_s) if tau_s > 0 else 0.0
        prev = prev * r + math.sqrt(max(1.0 - r * r, 0.0)) * sigma_state * rng.normal(size=2)
        state[i] = prev
        last_t = t[i]
    ttft = ttft_ms * np.exp(state[:, 0] + sigma_request * rng.normal(size=n))
    tpot = tpot_ms * scale_tpot * np.exp(state[:, 1] + sigma_request * rng.normal(size=n))
    e2e = ttft + (output_tokens - 1) * tpot
    df = pd.DataFrame({
        "start_time": t, "level": rate, "status": "ok", "http_status": 200.0, "ttft_ms": ttft, "tpot_ms": tpot,
        "e2e_ms": e2e, "close_ms": e2e, "input_tokens": 100.0, "output_tokens": float(output_tokens),
        "cached_tokens": np.nan, "output_events": float(output_tokens), "scheduled_time": t, "backoff_ms": np.nan,
        "itl_ms": [" ".join([f"{x:.4f}"] * (output_tokens - 1)) for x in tpot],
    })
    return df, Window(rate, t0, t0 + seconds, t0 - warmup_s)


def stochastic_truth(rate: float = 20.0, ttft_ms: float = 100.0, tpot_ms: float = 10.0, sigma_state: float = 0.3,
                     sigma_request: float = 0.2, output_tokens: int = 32, scale_tpot: float = 1.0
                     ) -> dict[str, float]:
    """The true figures of :func:`stochastic_level`'s levels, by levels.csv column: TTFT, TPOT and ITL mean,
    p50, p90 and p99 (lognormal: ``median * exp(sigma * z_p)``, mean ``median * exp(sigma^2 / 2)``; every gap
    of a request equals its TPOT, so ITL's distribution is TPOT's), and the request, input and output rates."""
    from statistics import NormalDist

    sigma = math.sqrt(sigma_state**2 + sigma_request**2)
    out: dict[str, float] = {}
    for name, median in (("ttft", ttft_ms), ("tpot", tpot_ms * scale_tpot), ("itl", tpot_ms * scale_tpot)):
        for p in (50, 90, 99):
            out[f"{name}_p{p}_ms"] = median * math.exp(sigma * NormalDist().inv_cdf(p / 100.0))
        out[f"{name}_mean_ms"] = median * math.exp(sigma**2 / 2.0)
    out["request_throughput_req_s"] = rate
    out["input_throughput_tok_s"] = 100.0 * rate
    out["output_throughput_tok_s"] = float(output_tokens) * rate
    return out
