"""The simulated engine's HTTP/1.1 server: the asyncio protocol, one :class:`Connection` per client.

A real server on a real socket (no locust, no gevent): keep-alive
connections (pipelined requests queued), ``Content-Length`` bodies, and
responses written whole or as a chunked event stream, one event per
``write()``. What a request means is the :class:`Handler`'s business (the
engine, :mod:`tokenswarm.simengine.handler`); framing errors are answered
here with :class:`HTTPFailure`'s OpenAI-style JSON body and the connection
closed.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Protocol

MAX_HEAD = 65536  # bytes of request line and headers
MAX_BODY = 64 << 20  # bytes of request body

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HTTPFailure(Exception):
    """A request the engine answers with an HTTP error (status and OpenAI-style body)."""

    def __init__(self, status: int, message: str, kind: str = "BadRequestError", extra: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.extra = extra  # more header lines, each ending in CRLF

    def body(self) -> bytes:
        return json.dumps(
            {"object": "error", "message": str(self), "type": self.kind, "param": None, "code": self.status}
        ).encode()


class Handler(Protocol):
    """What a :class:`Connection` needs from the server it belongs to."""

    loop: asyncio.AbstractEventLoop

    def clock(self) -> float:
        """Now, seconds on the loop's clock (the arrival time given to :meth:`handle`)."""
        ...

    def connection_opened(self) -> None: ...

    def connection_closed(self, active: Any) -> None:
        """The client went away; ``active`` is the request it left in flight (or None)."""
        ...

    def handle(self, conn: Connection, method: str, path: str, headers: dict[str, str], body: bytes,
               arrival: float) -> None:
        """Answer one request (headers' names lower-case); ends with :meth:`Connection.respond`,
        :meth:`Connection.end_stream` or :meth:`Connection.drop`, now or later."""
        ...


class Connection(asyncio.Protocol):
    """One client connection: parses requests (keep-alive, pipelined ones queued) and writes responses.

    ``active`` is the handler's request in flight on it, ``rid_header`` the header line naming it.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.tr: asyncio.Transport | None = None
        self.buf = b""
        self.active: Any = None
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
        self.handler.connection_opened()

    def connection_lost(self, exc: Exception | None) -> None:
        active, self.active = self.active, None
        self.handler.connection_closed(active)
        self.tr = None

    def data_received(self, data: bytes) -> None:
        arrival = self.handler.clock()
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
                method, path, headers = parse_request_head(buf[:end])
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
            self.handler.handle(self, method, path, headers, body, arrival)

    # -- writing ------------------------------------------------------------------
    def respond(self, status: int, body: bytes, ctype: str = "application/json", extra: str = "",
                close: bool = False) -> None:
        """A whole response; ``extra``: more header lines, each ending in CRLF."""
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
        """The head of a chunked event stream, with ``first`` as its first chunk (if not empty)."""
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
            self.handler.loop.call_later(after, tr.close)
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
            self.handler.loop.call_soon(self._parse, self.handler.clock())


def parse_request_head(raw: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers (without the blank line) -> method, target, headers by lower-case name.
    Raises ValueError naming a bad line."""
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


async def listen(handler: Handler, sock: socket.socket | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> asyncio.AbstractServer:
    """Serve ``handler`` on ``sock`` (already bound and listening) or on ``host``:``port``."""
    loop = handler.loop
    if sock is not None:
        return await loop.create_server(lambda: Connection(handler), sock=sock, backlog=4096)
    return await loop.create_server(lambda: Connection(handler), host, port, backlog=4096, reuse_address=True)
