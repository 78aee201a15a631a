"""HTTP/1.1 framing for the measured stream (RFC 9112), sans-IO: bytes in, head and body bytes out.

:func:`request_head` writes a request's line and headers; a :class:`ResponseReader` is fed the bytes each
``recv()`` returned and gives back the body bytes they complete (chunked, ``Content-Length`` or
close-delimited), having parsed the status line and headers on the way. The response grammar is h11's
(https://h11.readthedocs.io): its client state machine, fed by the caller. No socket here: the caller reads,
so it can take the kernel's receive time of every read (:class:`tokenswarm.client.Connection`).

Measured against the hand-made reader h11 replaced, interleaved in one sitting on a busy 2-core machine
(``bench/client_overhead.py``; engine and client pinned to one core each): TPOT error p50/p99 0.000/0.001 ms
with both in every run. TTFT error p50/p99 within the run-to-run spread, which the engine's own lateness sets:
at 64 and 256 users (TTFT 200 ms, TPOT 20 ms, 128 tokens; two runs each, 1 process and 2 workers) p50
0.05-0.93 ms against 0.08-0.57, p99 0.26-20.2 ms against 4.0-14.0; at 1024 users in one process (TPOT 100 ms,
64 tokens; six runs each) p50 0.07-0.52 ms (median 0.21) against 0.07-0.26 (0.15), p99 1.4-5.8 ms (median
4.8) against 0.8-5.5 (4.5). The cost is CPU: the client used 0.35-0.39 of a core at 1024 users against
0.29-0.30, 0.43-0.49 against 0.35-0.44 at 256; ``bench/http_framing.py`` puts it at 4-5 us an event against
about 1 us (the SSE decoder and the dialect take about 4 us more). A process holds fewer streams before its
core saturates; the read side stays exact (kernel receive timestamps) until then.
"""

from __future__ import annotations

from typing import NamedTuple

import h11

MAX_HEAD_BYTES = 65536  # a response head larger than this is a protocol error


class ProtocolError(Exception):
    """The server broke HTTP/1.1 framing; the message (h11's) says how."""


class Head(NamedTuple):
    """A response's status code, reason phrase and headers (names lower-cased; of a repeated header the last
    value)."""

    status: int
    reason: str
    headers: dict[str, str]


def request_head(target, method: str, path: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of a request to ``target`` (a :class:`~tokenswarm.http.target.Target`),
    each line ending with CRLF, up to (not including) ``Content-Length`` and the blank line: callers may
    append more header lines. Raises ValueError when a header holds a line break (naming the header, not its
    value)."""
    lines = [f"{method} {target.base_path}{path} HTTP/1.1", f"Host: {target.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"header contains a line break: {line.split(':', 1)[0]!r}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class ResponseReader:
    """One response to one request, read incrementally on h11's client state machine.

    :meth:`feed` takes the bytes of each read and returns the body bytes they complete (``b""`` while the
    head is incomplete); ``head`` is None until the blank line after the headers has arrived (1xx answers are
    skipped); ``complete`` turns True at the end of the message; :meth:`eof` tells it the peer closed the
    connection. Afterwards ``reusable`` says whether the connection may carry the next request: the message
    ended in order, keep-alive, and nothing came after it. ``method`` is the request's (a HEAD answer has no
    body). Raises :class:`ProtocolError`.
    """

    __slots__ = ("method", "head", "complete", "_c", "_extra")

    def __init__(self, method: str = "POST") -> None:
        self.method = method
        self.head: Head | None = None
        self.complete = False
        self._extra = False  # bytes came after the message
        c = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        # the caller writes the request (request_head, then the body): the state machine is told that one
        # request of this method went out, which is all it needs to read the answer
        c.send(h11.Request(method=method, target="/", headers=[("Host", "-"), ("Content-Length", "0")]))
        c.send(h11.EndOfMessage())
        self._c = c

    @property
    def reusable(self) -> bool:
        c = self._c
        extra, closed = c.trailing_data
        return self.complete and not self._extra and not extra and not closed and c.their_state is h11.DONE

    def feed(self, data: bytes) -> bytes:
        """The body bytes ``data`` completes (``data`` must not be empty: that is :meth:`eof`)."""
        self._c.receive_data(data)
        return self._events()

    def eof(self) -> None:
        """The peer closed the connection: that ends a close-delimited body, and cuts any other short."""
        self._c.receive_data(b"")
        try:
            self._events()
        except ProtocolError:
            pass  # closed inside the message: not complete

    def _events(self) -> bytes:
        c = self._c
        out: list[bytes] = []
        while True:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError as e:
                if not self.complete:
                    raise ProtocolError(str(e)) from None
                self._extra = True  # bytes after the end of the message: the connection is not reusable
                break
            kind = type(ev)
            if kind is h11.Data:
                out.append(bytes(ev.data))
            elif ev is h11.NEED_DATA or ev is h11.PAUSED or kind is h11.ConnectionClosed:
                break
            elif kind is h11.Response:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in ev.headers}
                self.head = Head(ev.status_code, ev.reason.decode("latin-1"), headers)
            elif kind is h11.EndOfMessage:
                self.complete = True
            # an InformationalResponse (1xx) is skipped: the final answer follows
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)
