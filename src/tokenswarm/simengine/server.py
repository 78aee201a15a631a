"""The simulated engine's HTTP/1.1 server: asyncio protocol, routes, streams, truth log.

A real server on a real socket (no locust, no gevent): keep-alive
connections, chunked event streams written one event per ``write()``, and
the routes an OpenAI-compatible engine serves (``/v1/chat/completions``,
``/v1/completions``, ``/v1/models``, ``/health``, ``/metrics``). Token timing
comes from :mod:`tokenswarm.simengine.scheduler`; byte formats from
:mod:`tokenswarm.simengine.wire`.

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

from tokenswarm.simengine.faults import FaultPlan
from tokenswarm.simengine.metrics import LatencyHistograms
from tokenswarm.simengine.prefixcache import PrefixCache
from tokenswarm.simengine.scheduler import BatchModel, BatchScheduler, FixedScheduler
from tokenswarm.simengine.wire import ChatWriter, CompletionsWriter, SGLangWriter, TGIWriter, TritonWriter, Writer

log = logging.getLogger("tokenswarm.simengine")

MAX_HEAD = 65536
MAX_BODY = 64 << 20
MAX_SCHED_SAMPLES = 20_000_000  # schedule-error samples kept (float32: 80 MB at most)
TRUTH_FLUSH_S = 1.0
TRUTH_HEADER = "request_id,arrival,first_write,last_write,tokens,prompt_tokens\n"

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class SimConfig:
    """Everything the simulated engine can be told (see ``tokenswarm simengine --help``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "tokenswarm-sim"
    ttft_ms: float | None = None  # fixed timing when both are set
    tpot_ms: float | None = None
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
            return f"fixed timing: TTFT {self.ttft_ms or 0:g} ms, TPOT {self.tpot_ms or 0:g} ms{cap}"
        b = self.batch
        return (
            f"continuous batching: {b.max_num_seqs} slots, prefill {b.prefill_tps:g} tok/s, "
            f"step {b.step_base_ms:g} ms + {b.step_per_seq_ms:g} ms/seq, KV cache {b.kv_cache_tokens} tokens"
        )


class HTTPFailure(Exception):
    """A request the engine answers with an HTTP error (status and OpenAI-style body)."""

    def __init__(self, status: int, message: str, kind: str = "BadRequestError", extra: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.extra = extra

    def body(self) -> bytes:
        return json.dumps(
            {"object": "error", "message": str(self), "type": self.kind, "param": None, "code": self.status}
        ).encode()


class Stream:
    """One generation request in flight: the scheduler's item, writing to its connection."""

    __slots__ = (
        "engine", "conn", "writer", "stream", "prompt_tokens", "max_tokens", "emitted", "cancelled",
        "cached_tokens", "arrival", "admitted_at", "first_write", "last_write", "fault", "fault_at",
    )

    def __init__(self, engine: SimEngine, conn: _Conn, writer: Writer, stream: bool, prompt_tokens: int,
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


class _Conn(asyncio.Protocol):
    """One client connection: parses requests (keep-alive, pipelined ones queued) and writes responses."""

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine
        self.tr: asyncio.Transport | None = None
        self.buf = b""
        self.active: Stream | None = None
        self.busy = False
        self.close_after = False
        self.rid_header = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.engine.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.connections -= 1
        if self.active is not None:
            self.engine.cancel(self.active)
            self.active = None
        self.tr = None

    def data_received(self, data: bytes) -> None:
        arrival = self.engine.clock()
        self.buf += data
        if not self.busy:
            self._parse(arrival)

    def _parse(self, arrival: float) -> None:
        while not self.busy and self.tr is not None:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.respond(431, HTTPFailure(431, "request headers too large").body(), close=True)
                return
            try:
                method, path, headers = _parse_request_head(buf[:end])
            except ValueError as e:
                self.respond(400, HTTPFailure(400, str(e)).body(), close=True)
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.respond(411, HTTPFailure(411, "chunked request bodies are not supported").body(), close=True)
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self.respond(400, HTTPFailure(400, "bad Content-Length").body(), close=True)
                return
            if length > MAX_BODY:
                self.respond(413, HTTPFailure(413, "request body too large").body(), close=True)
                return
            if len(buf) < end + 4 + length:
                return
            body = buf[end + 4 : end + 4 + length]
            self.buf = buf[end + 4 + length :]
            self.close_after = headers.get("connection", "").lower() == "close"
            self.busy = True
            self.engine.handle(self, method, path, headers, body, arrival)

    # -- writing ------------------------------------------------------------------
    def respond(self, status: int, body: bytes, ctype: str = "application/json", extra: str = "",
                close: bool = False) -> None:
        tr = self.tr
        if tr is None:
            return
        close = close or self.close_after
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\ncontent-type: {ctype}\r\n"
            f"content-length: {len(body)}\r\n{extra}"
            + ("connection: close\r\n" if close else "")
            + "\r\n"
        )
        tr.write(head.encode() + body)
        self._done(close)

    def start_stream(self, first: bytes, extra: str = "") -> None:
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            f"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n{extra}\r\n"
        ).encode()
        if first:
            head += b"%x\r\n%b\r\n" % (len(first), first)
        if self.tr is not None:
            self.tr.write(head)

    def chunk(self, payload: bytes) -> None:
        # an empty chunk is the end of the message: writing one (a dialect whose end event is empty) before
        # end_stream's would leave a second terminator on the keep-alive connection for the next response
        if self.tr is not None and payload:
            self.tr.write(b"%x\r\n%b\r\n" % (len(payload), payload))

    def drop(self, after: float = 0.0) -> None:
        """Close the connection (now, or ``after`` seconds with nothing more sent)."""
        self.active = None
        tr = self.tr
        if tr is None:
            return
        if after > 0:
            self.engine.loop.call_later(after, tr.close)
        else:
            tr.close()

    def end_stream(self) -> None:
        if self.tr is not None:
            self.tr.write(b"0\r\n\r\n")
        self._done(self.close_after)

    def _done(self, close: bool) -> None:
        self.active = None
        self.busy = False
        if close:
            if self.tr is not None:
                self.tr.close()
            return
        if self.buf:  # a pipelined request waits: take it on the next loop turn
            self.engine.loop.call_soon(self._parse, self.engine.clock())


def _parse_request_head(raw: bytes) -> tuple[str, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"bad request line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


class SimEngine:
    """The simulated engine: routes requests to writers and the scheduler, keeps counters."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.loop = asyncio.get_event_loop()
        self.clock = self.loop.time
        self.epoch_offset = time.time() - self.loop.time()
        if config.fixed:
            self.sched: FixedScheduler | BatchScheduler = FixedScheduler(
                self.loop, (config.ttft_ms or 0.0) / 1000.0, (config.tpot_ms or 0.0) / 1000.0,
                config.max_num_seqs or 0,
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
        if sock is not None:
            self.server = await self.loop.create_server(lambda: _Conn(self), sock=sock, backlog=4096)
        else:
            self.server = await self.loop.create_server(
                lambda: _Conn(self), self.cfg.host, self.cfg.port, backlog=4096, reuse_address=True
            )
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

    # -- requests -------------------------------------------------------------------------
    def cancel(self, st: Stream) -> None:
        if st.emitted < st.max_tokens:
            self.cancelled += 1
            self.sched.cancel(st)

    def handle(self, conn: _Conn, method: str, path: str, headers: dict[str, str], body: bytes,
               arrival: float) -> None:
        path = path.split("?", 1)[0]
        try:
            api = self._api(path)
            if self.cfg.api_key and (api is not None or path == "/v1/models"):
                auth = headers.get("authorization", "")
                if auth != f"Bearer {self.cfg.api_key}":
                    # echoes the key it got, as some gateways do: the client must keep it out of its outputs
                    given = auth.split()[-1] if auth.split() else "none"
                    raise HTTPFailure(401, f"Incorrect API key provided: {given}.", "AuthenticationError")
            if api is not None:
                if method != "POST":
                    raise HTTPFailure(405, f"{method} not allowed on {path}", "MethodNotAllowed")
                self._generate(conn, api, path, headers, body, arrival)
            elif path not in _GET_ROUTES:
                raise HTTPFailure(404, f"Not Found: {path}", "NotFoundError")
            elif method not in ("GET", "HEAD"):
                raise HTTPFailure(405, f"{method} not allowed on {path}", "MethodNotAllowed")
            elif path == "/health":
                conn.respond(200, b"")
            elif path == "/v1/models":
                conn.respond(200, self._models())
            elif path == "/metrics":
                conn.respond(200, self._metrics(), ctype="text/plain; version=0.0.4; charset=utf-8")
            else:  # /sim/stats
                conn.respond(200, json.dumps(self.stats()).encode())
        except HTTPFailure as e:
            self.errors += 1
            conn.active = None
            conn.respond(e.status, e.body(), extra=e.extra)

    def _api(self, path: str) -> str | None:
        """Which API a generation path belongs to (None: not a generation route)."""
        if path in _OPENAI:
            return _OPENAI[path]
        if path == "/generate":
            return "generate"  # SGLang or TGI: told apart by the body
        if path == "/generate_stream":
            return "tgi"
        if path.startswith("/v2/models/") and path.endswith(("/generate_stream", "/generate")):
            return "triton"
        return None

    def _generate(self, conn: _Conn, api: str, path: str, headers: dict[str, str], body: bytes,
                  arrival: float) -> None:
        self.requests += 1
        try:
            req = json.loads(body)
        except ValueError:
            raise HTTPFailure(400, "request body is not valid JSON") from None
        if not isinstance(req, dict):
            raise HTTPFailure(400, "request body must be a JSON object")
        model = req.get("model") or self.cfg.model
        if api == "generate":
            api = "tgi" if "inputs" in req else "sglang"
        stream = bool(req.get("stream", False))
        include_usage = False
        if api == "chat":
            messages = req.get("messages")
            if not isinstance(messages, list) or not messages:
                raise HTTPFailure(400, "'messages' must be a non-empty list")
            words = [w for m in messages if isinstance(m, dict) for w in _content_words(m.get("content"))]
            max_tokens = _first(req, "max_completion_tokens", "max_tokens")
        elif api == "completions":
            words = _words(req.get("prompt"), "prompt")
            max_tokens = _first(req, "max_tokens")
        elif api == "sglang":
            words = _words(req.get("text"), "text")
            max_tokens = _first(req.get("sampling_params") or {}, "max_new_tokens")
        elif api == "tgi":
            words = _words(req.get("inputs"), "inputs")
            max_tokens = _first(req.get("parameters") or {}, "max_new_tokens")
            stream = path == "/generate_stream" or stream
        else:  # triton: /v2/models/<model>/generate[_stream]
            model = path.split("/")[3] or model
            words = _words(req.get("text_input"), "text_input")
            max_tokens = _first(req, "max_tokens")
            stream = path.endswith("/generate_stream")
        prompt_tokens = len(words)
        if api in ("chat", "completions"):
            if self.cfg.strict_model and model != self.cfg.model:
                raise HTTPFailure(404, f"The model `{model}` does not exist.", "NotFoundError")
            opts = req.get("stream_options") or {}
            include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
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
        if api == "triton":
            writer: Writer = TritonWriter(rid, model, prompt_tokens, include_usage, offset=self._seq,
                                          cumulative=headers.get("x-sim-text") == "cumulative")
        else:
            writer = _WRITERS[api](rid, model, prompt_tokens, include_usage, offset=self._seq)
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

    def _begin(self, conn: _Conn, st: Stream, arrival: float | None) -> None:
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
        from tokenswarm.simengine.metrics import render

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


_GET_ROUTES = ("/health", "/v1/models", "/metrics", "/sim/stats")
_OPENAI = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
_WRITERS: dict[str, type[Writer]] = {"chat": ChatWriter, "completions": CompletionsWriter, "sglang": SGLangWriter,
                                     "tgi": TGIWriter}


def _first(obj: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = obj.get(k)
        if v is not None:
            return v
    return None


def _words(text: Any, field: str) -> list[str]:
    """The prompt's tokens as the engine counts them: its whitespace-separated words."""
    if isinstance(text, list):
        text = " ".join(str(p) for p in text)
    if not isinstance(text, str):
        raise HTTPFailure(400, f"'{field}' must be a string")
    return text.split()


def _content_words(content: Any) -> list[str]:
    if isinstance(content, str):
        return content.split()
    if isinstance(content, list):  # OpenAI content parts
        return [w for p in content if isinstance(p, dict) for w in str(p.get("text", "")).split()]
    return []
