"""The simulated engine: routes, generation requests, token streams, counters, truth log.

:class:`SimEngine` is the handler behind the HTTP server
(:mod:`tokenswarm.simengine.server`): it serves the routes an
OpenAI-compatible engine serves (``/v1/chat/completions``,
``/v1/completions``, SGLang's, TGI's and Triton's generation routes,
``/v1/models``, ``/version``, ``/health``, ``/metrics``), reads each generation request
with its API's reader and answers with its writer
(:mod:`tokenswarm.simengine.apis`). Token timing comes from
:mod:`tokenswarm.simengine.scheduler`.

For timing checks it can log, per request, when it arrived and when its
first and last output chunks were written (``--truth-log``), and it keeps
its own schedule error (actual minus planned write time) at ``/sim/stats``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from array import array
from dataclasses import dataclass, field
from typing import Any

from tokenswarm import __version__
from tokenswarm.simengine import apis
from tokenswarm.simengine.apis import Writer
from tokenswarm.simengine.faults import FaultPlan
from tokenswarm.simengine.metrics import LatencyHistograms, render
from tokenswarm.simengine.prefixcache import PrefixCache
from tokenswarm.simengine.scheduler import BatchModel, BatchScheduler, FixedScheduler
from tokenswarm.simengine.server import Connection, HTTPFailure, listen

log = logging.getLogger("tokenswarm.simengine")

MAX_SCHED_SAMPLES = 20_000_000  # schedule-error samples kept (float32: 80 MB at most)
TRUTH_FLUSH_S = 1.0
TRUTH_HEADER = "request_id,arrival,first_write,last_write,tokens,prompt_tokens\n"


@dataclass
class SimConfig:
    """Everything the simulated engine can be told (see ``tokenswarm simengine --help``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "tokenswarm-sim"
    ttft_ms: float | None = None  # fixed timing when both are set
    tpot_ms: float | None = None
    ttft_sigma: float = 0.0  # the stochastic mode: each request's TTFT is ttft_ms * exp(sigma * Z)
    tpot_sigma: float = 0.0  # ... and its TPOT tpot_ms * exp(sigma * Z), Z standard normal
    seed: int | None = None  # seeds those draws
    max_num_seqs: int | None = None  # None: the batch model's default; 0 with fixed timing: unlimited
    batch: BatchModel = field(default_factory=BatchModel)
    default_max_tokens: int = 128
    max_model_len: int = 32768
    truth_log: str | None = None
    strict_model: bool = False  # reject model names other than ``model`` (404), as vLLM does
    api_key: str = ""  # when set, generation routes and /v1/models need "Authorization: Bearer <key>"
    faults: dict[str, float] = field(default_factory=dict)  # kind -> rate (see faults.py)
    fault_delay_s: float = 5.0  # slow_headers and stall hold for this long
    fault_seed: int | None = None
    workers: int = 1  # processes serving one port (SO_REUSEPORT), each an independent engine
    prefix_cache_blocks: int = 8192  # LRU prefix cache, 16-token blocks (0: off)

    @property
    def fixed(self) -> bool:
        return self.ttft_ms is not None or self.tpot_ms is not None

    def describe(self) -> str:
        if self.fixed:
            cap = f", max {self.max_num_seqs} running" if self.max_num_seqs else ""
            if self.ttft_sigma or self.tpot_sigma:
                return (f"stochastic timing: TTFT lognormal (median {self.ttft_ms or 0:g} ms, sigma "
                        f"{self.ttft_sigma:g}), TPOT lognormal (median {self.tpot_ms or 0:g} ms, sigma "
                        f"{self.tpot_sigma:g}) per request, seed {self.seed}{cap}")
            return f"fixed timing: TTFT {self.ttft_ms or 0:g} ms, TPOT {self.tpot_ms or 0:g} ms{cap}"
        b = self.batch
        return (
            f"continuous batching: {b.max_num_seqs} slots, prefill {b.prefill_tps:g} tok/s, "
            f"step {b.step_base_ms:g} ms + {b.step_per_seq_ms:g} ms/seq, KV cache {b.kv_cache_tokens} tokens"
        )


class Stream:
    """One generation request in flight: the scheduler's item, writing to its connection."""

    __slots__ = (
        "engine", "conn", "writer", "stream", "prompt_tokens", "max_tokens", "emitted", "cancelled",
        "cached_tokens", "arrival", "admitted_at", "first_write", "last_write", "fault", "fault_at",
    )

    def __init__(self, engine: SimEngine, conn: Connection, writer: Writer, stream: bool, prompt_tokens: int,
                 max_tokens: int, arrival: float) -> None:
        self.engine = engine
        self.conn = conn
        self.writer = writer
        self.stream = stream
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.emitted = 0
        self.cancelled = False
        self.cached_tokens = 0
        self.arrival = arrival
        self.admitted_at = arrival
        self.first_write = 0.0
        self.last_write = 0.0
        self.fault: str | None = None
        self.fault_at = -1

    def admitted(self, now: float) -> None:
        self.admitted_at = now

    def token(self, now: float, planned: float) -> bool:
        i = self.emitted
        if i == self.fault_at:
            self._mid_stream_fault()
            return True
        self.emitted = i + 1
        last = self.emitted >= self.max_tokens
        engine = self.engine
        t = engine.clock()
        if self.stream:
            self.conn.chunk(self.writer.token(i, last))
        if i == 0:
            self.first_write = t
            engine.hist.ttft.observe(t - self.arrival)
        else:
            engine.hist.itl.observe(t - self.last_write)
        self.last_write = t
        if len(engine.sched_err) < MAX_SCHED_SAMPLES:
            engine.sched_err.append((t - planned) * 1000.0)
        engine.generation_tokens += 1
        if last:
            self.finish()
        return last

    def _mid_stream_fault(self) -> None:
        """Break the stream the way ``self.fault`` says (see faults.py); the scheduler drops it."""
        conn, kind = self.conn, self.fault
        if kind == "disconnect":
            conn.drop()
        elif kind == "malformed":
            conn.chunk(b'data: {"id": "' + self.writer.id.encode() + b'", "choices": [{"delta": \n\n')
            conn.drop(after=self.engine.cfg.fault_delay_s)
        elif kind == "error_event":
            conn.chunk(b'data: {"error": {"message": "injected server error", "type": "InternalServerError", '
                       b'"code": 500}}\n\n')
            conn.end_stream()
        elif kind == "stall":
            conn.drop(after=self.engine.cfg.fault_delay_s)
        else:  # truncate: the response ends cleanly, without finish, usage or [DONE]
            conn.end_stream()

    def finish(self) -> None:
        engine = self.engine
        n = self.emitted
        if self.stream:
            self.conn.chunk(self.writer.end(n, self.cached_tokens))
            self.conn.end_stream()
        else:
            self.conn.respond(200, self.writer.full(n, self.cached_tokens), extra=self.conn.rid_header)
        engine.finished += 1
        engine.hist.finished(self.arrival, self.admitted_at, self.first_write, self.last_write, n)
        if engine.truth is not None:
            off = engine.epoch_offset
            engine.truth.append(
                f"{self.writer.id},{self.arrival + off:.6f},{self.first_write + off:.6f},"
                f"{self.last_write + off:.6f},{n},{self.prompt_tokens}\n"
            )


class SimEngine:
    """The simulated engine: routes requests to their API's reader and writer and to the scheduler, keeps
    counters. It is the :class:`~tokenswarm.simengine.server.Handler` of its connections."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.loop = asyncio.get_event_loop()
        self.clock = self.loop.time
        self.epoch_offset = time.time() - self.loop.time()
        if config.fixed:
            self.sched: FixedScheduler | BatchScheduler = FixedScheduler(
                self.loop, (config.ttft_ms or 0.0) / 1000.0, (config.tpot_ms or 0.0) / 1000.0,
                config.max_num_seqs or 0, config.ttft_sigma, config.tpot_sigma, config.seed,
            )
        else:
            if config.max_num_seqs:
                config.batch.max_num_seqs = config.max_num_seqs
            self.sched = BatchScheduler(self.loop, config.batch)
        self.sched_err = array("f")
        self.prefix_cache = PrefixCache(config.prefix_cache_blocks)
        self.faults = FaultPlan(config.faults, config.fault_seed)
        self.truth: list[str] | None = [] if config.truth_log else None
        self._truth_fd: int | None = None
        self.connections = 0
        self.requests = 0
        self.finished = 0
        self.errors = 0
        self.cancelled = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.hist = LatencyHistograms()  # vLLM's four latency histograms, from this engine's own schedule
        self.server: asyncio.AbstractServer | None = None
        self._seq = 0
        self._prefix = uuid.uuid4().hex[:8]

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, sock: socket.socket | None = None) -> int:
        """Listen (on ``sock`` if given); returns the bound port."""
        if self.cfg.truth_log:
            # appended with one write() per flush: several engine processes can share the file
            self._truth_fd = os.open(self.cfg.truth_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if os.fstat(self._truth_fd).st_size == 0:
                os.write(self._truth_fd, TRUTH_HEADER.encode())
            self.loop.call_later(TRUTH_FLUSH_S, self._flush_truth, True)
        self.server = await listen(self, sock, self.cfg.host, self.cfg.port)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self._flush_truth(False)
        if self._truth_fd is not None:
            os.close(self._truth_fd)
            self._truth_fd = None

    def _flush_truth(self, again: bool) -> None:
        if self.truth and self._truth_fd is not None:
            os.write(self._truth_fd, "".join(self.truth).encode())
            self.truth.clear()
        if again and self._truth_fd is not None:
            self.loop.call_later(TRUTH_FLUSH_S, self._flush_truth, True)

    # -- requests (the server's Handler) --------------------------------------------------------
    def connection_opened(self) -> None:
        self.connections += 1

    def connection_closed(self, active: Stream | None) -> None:
        self.connections -= 1
        if active is not None:
            self.cancel(active)

    def cancel(self, st: Stream) -> None:
        if st.emitted < st.max_tokens:
            self.cancelled += 1
            self.sched.cancel(st)

    def handle(self, conn: Connection, method: str, path: str, headers: dict[str, str], body: bytes,
               arrival: float) -> None:
        path = path.split("?", 1)[0]
        try:
            route = apis.route(path)
            if self.cfg.api_key and (route is not None or path == "/v1/models"):
                auth = headers.get("authorization", "")
                if auth != f"Bearer {self.cfg.api_key}":
                    # echoes the key it got, as some gateways do: the client must keep it out of its outputs
                    given = auth.split()[-1] if auth.split() else "none"
                    raise HTTPFailure(401, f"Incorrect API key provided: {given}.", "AuthenticationError")
            if route is not None:
                if method != "POST":
                    raise HTTPFailure(405, f"{method} not allowed on {path}", "MethodNotAllowed")
                self._generate(conn, route, path, headers, body, arrival)
            elif path not in _GET_ROUTES:
                raise HTTPFailure(404, f"Not Found: {path}", "NotFoundError")
            elif method not in ("GET", "HEAD"):
                raise HTTPFailure(405, f"{method} not allowed on {path}", "MethodNotAllowed")
            elif path == "/health":
                conn.respond(200, b"")
            elif path == "/v1/models":
                conn.respond(200, self._models())
            elif path == "/version":  # as vLLM answers it
                conn.respond(200, json.dumps({"version": f"tokenswarm-sim {__version__}"}).encode())
            elif path == "/metrics":
                conn.respond(200, self._metrics(), ctype="text/plain; version=0.0.4; charset=utf-8")
            else:  # /sim/stats
                conn.respond(200, json.dumps(self.stats()).encode())
        except HTTPFailure as e:
            self.errors += 1
            conn.active = None
            conn.respond(e.status, e.body(), extra=e.extra)

    def _generate(self, conn: Connection, route: str, path: str, headers: dict[str, str], body: bytes,
                  arrival: float) -> None:
        self.requests += 1
        api, req = apis.read(route, body, path, headers)
        model = req.model or self.cfg.model
        words = req.words
        prompt_tokens = len(words)
        if api.openai and self.cfg.strict_model and model != self.cfg.model:
            raise HTTPFailure(404, f"The model `{model}` does not exist.", "NotFoundError")
        max_tokens = req.max_tokens
        stream = req.stream
        if max_tokens is None:
            max_tokens = self.cfg.default_max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise HTTPFailure(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
        if prompt_tokens + max_tokens > self.cfg.max_model_len:
            raise HTTPFailure(
                400,
                f"This model's maximum context length is {self.cfg.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
            )
        self._seq += 1
        rid = headers.get("x-request-id") or f"{self._prefix}{self._seq:x}"
        writer = api.writer(rid, model, req, offset=self._seq)
        st = Stream(self, conn, writer, stream, prompt_tokens, max_tokens, arrival)
        st.cached_tokens = writer.cached = self.prefix_cache.lookup_and_insert(words)
        writer.report_cached = bool(self.prefix_cache.capacity)
        if isinstance(self.sched, BatchScheduler) and not self.sched.fits(st):
            raise HTTPFailure(400, f"request needs {prompt_tokens + max_tokens} tokens of KV cache, more than "
                                   f"the engine's {self.cfg.batch.kv_cache_tokens}")
        self.prompt_tokens += prompt_tokens
        conn.active = st
        conn.rid_header = f"x-request-id: {rid}\r\n"
        fault = self.faults.pick(headers.get("x-sim-fault"), stream)
        if fault == "http_429":
            raise HTTPFailure(429, "Too many requests: rate limit reached (injected)", "RateLimitError",
                              extra="retry-after: 1\r\n")
        if fault == "http_500":
            raise HTTPFailure(500, "Internal server error (injected)", "InternalServerError")
        if fault is not None:
            st.fault = fault
            st.fault_at = max(1, min(max_tokens // 2, max_tokens - 1)) if fault != "slow_headers" else -1
        if fault == "slow_headers":
            self.loop.call_later(self.cfg.fault_delay_s, self._begin, conn, st, None)
            return
        self._begin(conn, st, arrival)

    def _begin(self, conn: Connection, st: Stream, arrival: float | None) -> None:
        if conn.tr is None or conn.active is not st:
            return  # the client gave up (slow_headers): nothing to send
        if arrival is None:  # held headers: the schedule starts now
            arrival = st.arrival = self.clock()
        if st.stream:
            conn.start_stream(st.writer.start(), extra=conn.rid_header)
        self.sched.submit(st, arrival)

    # -- read-only routes -------------------------------------------------------------------
    def _models(self) -> bytes:
        return json.dumps(
            {"object": "list", "data": [{"id": self.cfg.model, "object": "model", "created": 0,
                                         "owned_by": "tokenswarm", "max_model_len": self.cfg.max_model_len}]}
        ).encode()

    def _metrics(self) -> bytes:
        return render(self)

    def stats(self) -> dict[str, Any]:
        """Counters and the engine's own schedule error (actual minus planned write time)."""
        out: dict[str, Any] = {
            "requests": self.requests, "finished": self.finished, "errors": self.errors,
            "cancelled": self.cancelled, "running": self.sched.running, "waiting": self.sched.num_waiting,
            "prompt_tokens": self.prompt_tokens, "generation_tokens": self.generation_tokens,
            "connections": self.connections, "timing": self.cfg.describe(),
            "faults_injected": {k: v for k, v in self.faults.injected.items() if v},
            "prefix_cache_hit_ratio": round(self.prefix_cache.hit_ratio, 4),
        }
        errs = self.sched_err
        if len(errs):
            import numpy as np

            a = np.frombuffer(errs, dtype=np.float32)
            out["schedule_error_ms"] = {
                "count": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                "p999": float(np.percentile(a, 99.9)), "max": float(a.max()), "min": float(a.min()),
            }
        return out


_GET_ROUTES = ("/health", "/v1/models", "/version", "/metrics", "/sim/stats")
