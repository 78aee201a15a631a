"""Test helper: serve scripted HTTP response bytes over a socket pair, with delays.

Lets a test run the real client (:class:`tokenswarm.client.StreamCall`) against
exact bytes: recorded streams, odd chunk boundaries, disconnects, timing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable

from tokenswarm.client import Connection
from tokenswarm.http.target import Target

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "streams")


def fixture_events(name: str) -> list[bytes]:
    """A recorded stream split into its SSE events (each with its trailing blank line)."""
    with open(os.path.join(FIXTURES, name), "rb") as fh:
        raw = fh.read()
    bom = raw[:3] if raw.startswith(b"\xef\xbb\xbf") else b""  # a byte order mark stays on the first event
    events = _split_events(raw[len(bom):])
    if bom and events:
        events[0] = bom + events[0]
    return events


def _split_events(raw: bytes) -> list[bytes]:
    if b"\n" not in raw:
        sep = b"\r\r"  # bare CR line ends
    elif b"\r\n\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n\r\n", b""):
        sep = b"\r\n\r\n"
    else:
        sep = b"\n\n"
    parts = [p + sep for p in raw.split(sep) if p.strip()]
    return parts


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def response_head(status: int = 200, ctype: str = "text/event-stream", chunked: bool = True,
                  extra: str = "") -> bytes:
    reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "X")
    te = "transfer-encoding: chunked\r\n" if chunked else ""
    return f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\n{te}{extra}\r\n".encode()


def sse_response(events: Iterable[bytes], end: bool = True) -> list[bytes]:
    """Pieces of a chunked SSE response: head, one HTTP chunk per event, the last chunk."""
    pieces = [response_head()] + [chunk(e) for e in events]
    if end:
        pieces.append(b"0\r\n\r\n")
    return pieces


class LoopbackServer:
    """A real server on 127.0.0.1, a thread per connection: each request's head (its body, by Content-Length,
    read and dropped) goes to ``answer(conn, head)``, which writes the reply; returning False closes the
    connection. ``accepted`` counts connections, ``heads`` keeps every request head as text."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.heads: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        buf = b""
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    lengths = [ln.split(b":", 1)[1] for ln in head.split(b"\r\n")
                               if ln.lower().startswith(b"content-length:")]
                    length = int(lengths[0]) if lengths else 0
                    if len(rest) < length:
                        break  # the body is still on its way
                    buf = rest[length:]
                    self.heads.append(head.decode("latin-1"))
                    if self.answer(c, head) is False:
                        return

    def close(self) -> None:
        self.sock.close()


class ScriptedServer:
    """The far end of a socket pair: sends ``pieces`` (after reading the request), with delays."""

    def __init__(self, pieces: list[bytes], delays: list[float] | None = None, close: bool = False) -> None:
        self.client_sock, self.server_sock = socket.socketpair()
        self.pieces = pieces
        self.delays = delays or [0.0] * len(pieces)
        self.close = close
        self.sent_at: list[float] = []
        self.request = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        s = self.server_sock
        while b"\r\n\r\n" not in self.request:
            data = s.recv(65536)
            if not data:
                return
            self.request += data
        for piece, delay in zip(self.pieces, self.delays):
            if delay:
                time.sleep(delay)
            self.sent_at.append(time.perf_counter())
            try:
                s.sendall(piece)
            except OSError:  # the client gave up (a timeout test)
                return
        if self.close:
            s.shutdown(socket.SHUT_WR)

    def connection(self, read_timeout: float = 5.0) -> Connection:
        conn = Connection(Target("http", "127.0.0.1", 9, ""), connect_timeout=1.0, read_timeout=read_timeout)
        self.client_sock.settimeout(read_timeout)
        conn.sock = self.client_sock
        self.thread.start()
        return conn

    def stop(self) -> None:
        self.thread.join(timeout=5)
        for s in (self.client_sock, self.server_sock):
            try:
                s.close()
            except OSError:
                pass


def run_stream(pieces: list[bytes], dialect, delays: list[float] | None = None, close: bool = False,
               read_timeout: float = 5.0, head: bytes = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n",
               **call_kw):
    """One request through the real client against ``pieces``: (record, server); ``call_kw`` go to the
    :class:`~tokenswarm.client.StreamCall` (``await_usage``, ``count_tokens`` ...)."""
    from tokenswarm.client import StreamCall

    srv = ScriptedServer(pieces, delays, close=close)
    try:
        call = StreamCall(srv.connection(read_timeout), dialect, head, b"{}", "client-1", input_tokens=11, **call_kw)
        return call.run(), srv
    finally:
        srv.stop()


def late_first_read(conn: Connection, late_s: float) -> None:
    """Make ``conn``'s first read wait ``late_s`` seconds first: the client is busy elsewhere (the event loop
    serving other streams), and what came meanwhile waits in the socket, merged by the kernel."""
    real = conn.recv
    first = [True]

    def late(sock: socket.socket) -> tuple[bytes, float]:
        if first[0]:
            first[0] = False
            time.sleep(late_s)
        return real(sock)

    conn.recv = late  # type: ignore[method-assign]
