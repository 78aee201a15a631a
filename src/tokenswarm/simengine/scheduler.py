"""When each token of each request is written: the simulated engine's clock and schedulers.

Two timing models share one timer (:class:`Timer`): a single armed asyncio
callback for the earliest due time, woken ``SPIN_S`` early and then polling
the event loop until the exact moment, so writes land on schedule instead of
on epoll's millisecond ceiling, with no sleep per token and no drift (every
due time is planned from the previous *planned* time, never from "now").

* :class:`FixedScheduler`: every request gets TTFT then one token per TPOT
  (``--ttft-ms/--tpot-ms``), optionally queued behind ``max_num_seqs`` slots.
  With ``--ttft-sigma``/``--tpot-sigma`` (the stochastic mode) each request
  draws its own TTFT and its own TPOT (kept for all its tokens) from stated
  lognormal distributions (:class:`Lognormal`, seeded by ``--seed``), so the
  true percentiles of what a client should measure are known exactly.
* :class:`BatchScheduler`: a continuous-batching engine. Each step admits
  waiting requests while slots and KV cache allow, spends a chunked-prefill
  token budget, and lasts ``step_base + step_per_seq * batch + prefill/rate``;
  every running sequence gets one token at its end. So TTFT grows with load,
  output throughput saturates at ``1 / step_per_seq`` tokens/s, and requests
  queue once slots or KV cache run out: the curve real engines show.

A scheduled item is any object with the attributes of :class:`Seq` and a
``token(now, planned)`` method that writes the next token and returns True
when that was the last one.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

SPIN_S = 0.0015  # wake this early, then poll the loop until the due time
RESYNC_S = 0.050  # a batch step starting this late restarts its clock from now


class Seq(Protocol):
    prompt_tokens: int
    max_tokens: int
    emitted: int
    cancelled: bool
    cached_tokens: int

    def token(self, now: float, planned: float) -> bool: ...

    def admitted(self, now: float) -> None: ...


class Timer:
    """One armed callback for the earliest due time, fired on time to well under a millisecond."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._handle: asyncio.Handle | None = None
        self._at = math.inf

    def arm(self, when: float) -> None:
        if self._handle is not None:
            if when >= self._at:
                return
            self._handle.cancel()
        self._at = when
        early = when - SPIN_S
        if early > self.loop.time():
            self._handle = self.loop.call_at(early, self._fire)
        else:
            self._handle = self.loop.call_soon(self._fire)

    def _fire(self) -> None:
        self._handle = None
        at, self._at = self._at, math.inf
        now = self.loop.time()
        if now < at:  # inside the spin window: come back on the next loop turn
            self._at = at
            self._handle = self.loop.call_soon(self._fire)
            return
        self.on_time(now)

    def on_time(self, now: float) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Lognormal:
    """A duration's stated distribution: ``median`` (s) times ``exp(sigma * Z)``, Z standard normal
    (sigma 0: exactly ``median``). Its percentiles and mean are known, so a client's estimates can be checked
    against the truth."""

    median: float
    sigma: float = 0.0

    def draw(self, rng: random.Random) -> float:
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0)) if self.sigma else self.median

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100)."""
        return self.median * math.exp(self.sigma * NormalDist().inv_cdf(p / 100.0)) if self.sigma else self.median

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2.0)


class FixedScheduler(Timer):
    """TTFT after admission, then one token every TPOT; at most ``max_num_seqs`` at once. ``ttft_sigma`` and
    ``tpot_sigma`` (the stochastic mode): each request draws its TTFT and its TPOT from :class:`Lognormal`
    distributions of those medians (``ttft_s``, ``tpot_s``), with a generator seeded by ``seed``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ttft_s: float, tpot_s: float, max_num_seqs: int = 0,
                 ttft_sigma: float = 0.0, tpot_sigma: float = 0.0, seed: int | None = None):
        super().__init__(loop)
        self.ttft_dist = Lognormal(ttft_s, ttft_sigma)
        self.tpot_dist = Lognormal(tpot_s, tpot_sigma)
        self.rng = random.Random(seed)
        self.max_num_seqs = max_num_seqs or 1 << 30
        self.heap: list[tuple[float, int, Seq, float]] = []  # (due, order, sequence, its TPOT)
        self.waiting: deque[Seq] = deque()
        self.running = 0
        self._n = 0

    def submit(self, seq: Seq, now: float) -> None:
        if self.running >= self.max_num_seqs:
            self.waiting.append(seq)
            return
        self._start(seq, now)

    def _start(self, seq: Seq, now: float) -> None:
        self.running += 1
        seq.admitted(now)
        self._n += 1
        due = now + self.ttft_dist.draw(self.rng)
        heapq.heappush(self.heap, (due, self._n, seq, self.tpot_dist.draw(self.rng)))
        self.arm(due)

    def cancel(self, seq: Seq) -> None:
        seq.cancelled = True
        try:
            self.waiting.remove(seq)
        except ValueError:
            pass

    def on_time(self, now: float) -> None:
        heap = self.heap
        pop, push = heapq.heappop, heapq.heappush
        while heap and heap[0][0] <= now:
            due, n, seq, tpot = pop(heap)
            if seq.cancelled:
                self._release(now)
                continue
            if seq.token(now, due):
                self._release(now)
            else:
                push(heap, (due + tpot, n, seq, tpot))
        if heap:
            self.arm(heap[0][0])

    def _release(self, now: float) -> None:
        self.running -= 1
        while self.waiting and self.running < self.max_num_seqs:
            seq = self.waiting.popleft()
            if not seq.cancelled:
                self._start(seq, now)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def kv_usage(self) -> float:
        return self.running / self.max_num_seqs if self.max_num_seqs < 1 << 30 else 0.0


@dataclass
class BatchModel:
    """Parameters of the continuous-batching model (defaults: a mid-size model on one GPU)."""

    max_num_seqs: int = 256
    prefill_tps: float = 30000.0  # prompt tokens per second of prefill
    step_base_ms: float = 12.0  # decode step time with an empty batch
    step_per_seq_ms: float = 0.08  # added per running sequence
    max_batched_tokens: int = 8192  # chunked-prefill budget per step
    kv_cache_tokens: int = 262144  # KV cache capacity in tokens


class _Slot:
    __slots__ = ("seq", "prefill_left", "kv", "done")

    def __init__(self, seq: Seq, kv: int) -> None:
        self.seq = seq
        self.done = False
        self.prefill_left = max(0, seq.prompt_tokens - seq.cached_tokens)
        self.kv = kv


class BatchScheduler(Timer):
    """A continuous-batching engine: steps, slots, chunked prefill and a KV-cache budget."""

    def __init__(self, loop: asyncio.AbstractEventLoop, model: BatchModel) -> None:
        super().__init__(loop)
        self.m = model
        self.waiting: deque[Seq] = deque()
        self.slots: list[_Slot] = []
        self.kv_used = 0
        self.step_start = 0.0
        self.step_end = 0.0
        self.stepping = False
        self._emit: list[_Slot] = []

    # -- admission ------------------------------------------------------------
    def kv_need(self, seq: Seq) -> int:
        return seq.prompt_tokens + seq.max_tokens

    def fits(self, seq: Seq) -> bool:
        """Whether the request could ever run (it fits the whole KV cache)."""
        return self.kv_need(seq) <= self.m.kv_cache_tokens

    def submit(self, seq: Seq, now: float) -> None:
        self.waiting.append(seq)
        if not self.stepping:
            self._begin(now)

    def cancel(self, seq: Seq) -> None:
        seq.cancelled = True

    def _admit(self, now: float) -> None:
        m = self.m
        while self.waiting and len(self.slots) < m.max_num_seqs:
            seq = self.waiting[0]
            if seq.cancelled:
                self.waiting.popleft()
                continue
            need = self.kv_need(seq)
            if self.kv_used + need > m.kv_cache_tokens:
                break  # FIFO: the head waits for cache to free up
            self.waiting.popleft()
            self.kv_used += need
            self.slots.append(_Slot(seq, need))
            seq.admitted(now)

    # -- steps ------------------------------------------------------------------
    def _begin(self, now: float) -> None:
        self._admit(now)
        if not self.slots:
            self.stepping = False
            return
        m = self.m
        budget = m.max_batched_tokens
        emit: list[_Slot] = []
        decoding = 0
        for slot in self.slots:
            if slot.prefill_left == 0 and not slot.seq.cancelled:
                decoding += 1
                emit.append(slot)
        budget -= decoding
        prefill = 0
        for slot in self.slots:
            if slot.prefill_left and budget > 0 and not slot.seq.cancelled:
                take = min(slot.prefill_left, budget)
                slot.prefill_left -= take
                budget -= take
                prefill += take
                if slot.prefill_left == 0:
                    emit.append(slot)  # prefill done: its first token comes with this step
        step = (m.step_base_ms + m.step_per_seq_ms * len(emit)) / 1000.0 + prefill / m.prefill_tps
        self._emit = emit
        self.stepping = True
        self.step_start = now
        self.step_end = now + step
        self.arm(self.step_end)

    def on_time(self, now: float) -> None:
        planned = self.step_end
        drop = False
        for slot in self._emit:
            seq = slot.seq
            if seq.cancelled:
                drop = True
            elif seq.token(now, planned):
                slot.done = True
                drop = True
        if drop or any(s.seq.cancelled for s in self.slots):
            keep = []
            for slot in self.slots:
                if slot.done or slot.seq.cancelled:
                    self.kv_used -= slot.kv
                else:
                    keep.append(slot)
            self.slots = keep
        self._emit = []
        self._begin(planned if now - planned < RESYNC_S else now)

    @property
    def running(self) -> int:
        return len(self.slots)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def kv_usage(self) -> float:
        return self.kv_used / self.m.kv_cache_tokens
