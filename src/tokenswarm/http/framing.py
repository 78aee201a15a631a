"""HTTP/1.1 framing for the measured stream (RFC 9112), sans-IO: bytes in, head and body bytes out.

:func:`request_head` writes a request's line and headers; a :class:`ResponseReader` is fed the bytes each
``recv()`` returned and gives back the body bytes they complete (chunked, ``Content-Length`` or
close-delimited), having parsed the status line and headers on the way (a 1xx answer before the response is
skipped). No socket here: the caller reads, so it can take the kernel's receive time of every read
(:class:`tokenswarm.client.Connection`).

Why our own reader and not h11 (https://h11.readthedocs.io), which was tried in its place behind the same
interface: it costs the measurement. ``bench/http_framing.py`` puts h11 at 4-5 us an event against about 1 us
here (the SSE decoder and the dialect add about 4 us either way). On a quiet 16-core machine, engine and client
on separate cores, ``bench/client_overhead.py`` interleaved (TTFT 200 ms, TPOT 20 ms, 128 tokens, 30 s a
level): the client's CPU was 0.73-0.85 of a core at 256 users with h11 against 0.55-0.71 with this reader, its
event-loop lag p99 9.4-14.1 ms against 1.7-3.9, output throughput 99.7-99.8 % of ideal against 99.8-99.9 %; at
1024 users (TPOT 100 ms, 64 tokens) 0.65-0.67 of a core against 0.55-0.60, TTFT error p99 1.62-1.92 ms (two
runs) against 0.89-1.62 (five). TPOT error p99 0.001 ms with both. The client's CPU is its headroom: a process
saturates, and its timings carry client delay, that much sooner.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import NamedTuple

MAX_HEAD_BYTES = 65536  # a response head larger than this is a protocol error


class ProtocolError(Exception):
    """The server broke HTTP/1.1 framing; the message says how."""


class Head(NamedTuple):
    """A response's status line and headers (names lower-cased; of a repeated header the last value)."""

    status: int
    reason: str
    headers: dict[str, str]
    keep_alive: bool


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


def parse_head(raw: bytes) -> Head:
    """Parse ``HTTP/1.1 200 OK\\r\\nName: value\\r\\n...`` (without the blank line); raises
    :class:`ProtocolError` for a bad status line. Keep-alive: HTTP/1.1 unless ``Connection: close``,
    HTTP/1.0 only with ``Connection: keep-alive`` (RFC 9112 9.3)."""
    try:
        text = raw.decode("latin-1")
        lines = text.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
    except (ValueError, IndexError):
        raise ProtocolError(f"bad status line {raw[:60]!r}") from None
    if not version.startswith("HTTP/"):
        raise ProtocolError(f"bad status line {raw[:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    conn = headers.get("connection", "").lower()
    keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    return Head(status, reason, headers, keep_alive)


class BodyDecoder:
    """Incremental HTTP/1.1 body framing: chunked, Content-Length, or until close (RFC 9112 6.3).

    :meth:`feed` takes raw bytes and returns the body bytes they complete; ``complete`` turns True at the
    end of the message. Bytes after the end stay in ``buf``: they belong to no response, so the connection
    that carried them must not be reused.
    """

    __slots__ = ("mode", "remaining", "buf", "state", "complete", "_tail_body")

    _SIZE, _DATA, _CRLF, _TRAILER = 0, 1, 2, 3

    def __init__(self, head: Head, method: str = "POST") -> None:
        te = head.headers.get("transfer-encoding", "").lower()
        self.buf = b""
        self.state = self._SIZE
        self.remaining = 0
        self.complete = False
        self._tail_body = False  # the last bytes fed ended with body bytes (or their chunk's closing CRLF)
        if head.status in (204, 304) or 100 <= head.status < 200 or method == "HEAD":
            self.mode = "length"  # no body, whatever the headers say (RFC 9112 6.3, rule 1)
            self.complete = True
        elif "chunked" in te:
            self.mode = "chunked"
        elif "content-length" in head.headers:
            self.mode = "length"
            try:
                self.remaining = int(head.headers["content-length"])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {head.headers['content-length']!r}") from None
            self.complete = self.remaining == 0
        else:
            self.mode = "close"

    def feed(self, data: bytes) -> bytes:
        if self.mode == "chunked":
            return self._chunked(data)
        if self.mode == "length":
            take = data[: self.remaining]
            self.remaining -= len(take)
            if self.remaining == 0:
                self.complete = True
                if len(data) > len(take):
                    self.buf = data[len(take) :]  # bytes after the message: the connection is not reusable
            return take
        return data

    @property
    def ended_in_body(self) -> bool:
        """The bytes last fed ended with body bytes (or a chunk's closing CRLF after them, which servers
        write with the chunk): no framing of a later chunk, no end of message, no bytes after the message."""
        if self.mode == "chunked":
            return self._tail_body and (self.state != self._SIZE or not self.buf)
        return not self.buf

    def eof(self) -> None:
        """The peer closed the connection: that ends a close-delimited body only."""
        if self.mode == "close":
            self.complete = True

    def _chunked(self, data: bytes) -> bytes:
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        state = self.state
        tail = self._tail_body
        while pos < n:
            if state == self._DATA:
                take = min(self.remaining, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                tail = True
                self.remaining -= take
                if self.remaining == 0:
                    state = self._CRLF
            elif state == self._SIZE:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > 1024:
                        raise ProtocolError("chunk size line too long")
                    break
                try:
                    size = int(buf[pos:eol].split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {buf[pos:eol][:20]!r}") from None
                pos = eol + 2
                tail = False
                if size == 0:
                    state = self._TRAILER
                else:
                    self.remaining = size
                    state = self._DATA
            elif state == self._CRLF:
                if n - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                pos += 2
                state = self._SIZE
            else:  # trailer section: lines until an empty one
                tail = False
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if eol == pos:
                    self.complete = True
                    pos = eol + 2  # bytes after the message stay in buf: the connection is not reusable
                    break
                pos = eol + 2
        self.state = state
        self._tail_body = tail
        self.buf = buf[pos:] if pos < n else b""
        return out[0] if len(out) == 1 else b"".join(out)


class _Inflater:
    """Incremental gzip or deflate decoding of a body (RFC 9110 8.4.1): each call returns the decoded bytes
    the piece completes. ``deflate`` is meant as the zlib format (RFC 1950), but servers also send it raw
    (RFC 1951): the first bytes tell which."""

    __slots__ = ("_d", "_gzip")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None

    def __call__(self, data: bytes) -> bytes:
        d = self._d
        if d is None:  # deflate: a zlib header (CMF 0x?8, CMF*256+FLG divisible by 31), else raw
            raw = len(data) < 2 or data[0] & 0x0F != 8 or ((data[0] << 8) | data[1]) % 31
            d = self._d = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        try:
            return d.decompress(data)
        except zlib.error as e:
            raise ProtocolError(f"bad {'gzip' if self._gzip else 'deflate'} data in the body: {e}") from None


def content_decoder(coding: str) -> Callable[[bytes], bytes] | None:
    """An incremental decoder of a body sent with ``Content-Encoding: coding`` (``gzip``/``x-gzip``,
    ``deflate``; ``identity`` decodes to itself): a callable taking each piece of body bytes and returning the
    decoded bytes it completes (raises :class:`ProtocolError` on corrupt data). None for a coding this
    cannot decode (``br``, ``zstd``, a chain of several)."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return lambda data: data
    if coding in ("gzip", "x-gzip"):
        return _Inflater(True)
    if coding == "deflate":
        return _Inflater(False)
    return None


class ResponseReader:
    """One response, read incrementally: the head (:func:`parse_head`), then the body (:class:`BodyDecoder`).

    :meth:`feed` takes the bytes of each read and returns the body bytes they complete (``b""`` while the
    head is incomplete); ``head`` is None until the blank line after the headers has arrived; ``complete``
    turns True at the end of the message; :meth:`eof` tells it the peer closed the connection. Afterwards
    ``reusable`` says whether the connection may carry the next request. Raises :class:`ProtocolError`.
    """

    __slots__ = ("method", "head", "_raw", "_dec")

    def __init__(self, method: str = "POST") -> None:
        self.method = method
        self.head: Head | None = None
        self._raw = b""
        self._dec: BodyDecoder | None = None

    @property
    def complete(self) -> bool:
        return self._dec is not None and self._dec.complete

    @property
    def reusable(self) -> bool:
        dec = self._dec
        return (dec is not None and dec.complete and dec.mode != "close" and not dec.buf
                and self.head is not None and self.head.keep_alive)

    def feed(self, data: bytes) -> bytes:
        dec = self._dec
        if dec is not None:
            return dec.feed(data)
        raw = self._raw + data if self._raw else data
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            if len(raw) > MAX_HEAD_BYTES:
                raise ProtocolError(f"response headers larger than {MAX_HEAD_BYTES // 1024} KiB")
            self._raw = raw
            return b""
        self._raw = b""
        head = parse_head(raw[:end])
        if 100 <= head.status < 200 and head.status != 101:  # an interim answer (100 Continue): the next is it
            rest = raw[end + 4 :]
            return self.feed(rest) if rest else b""
        self.head = head
        dec = self._dec = BodyDecoder(self.head, self.method)
        rest = raw[end + 4 :]
        return dec.feed(rest) if rest else b""

    @property
    def ended_in_body(self) -> bool:
        """The bytes last fed ended with the body's bytes (:attr:`BodyDecoder.ended_in_body`): whatever the
        body's last byte completed, its arrival is the read's own."""
        dec = self._dec
        return dec is not None and dec.ended_in_body

    def eof(self) -> None:
        if self._dec is not None:
            self._dec.eof()
