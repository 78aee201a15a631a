"""The measured streaming call: one keep-alive connection per user, exact timestamps.

Standard-library sockets only. Under Locust, gevent's monkey-patching makes
them cooperative; in tests, preflight checks and benchmarks they are plain
blocking sockets. Owning the socket lets the client take the send timestamp
immediately before the request bytes are written and a timestamp for every
``recv()`` as soon as it returns, with no buffering layer in between (library
clients were seen batching SSE reads, or splitting lines on ``\\r\\n`` only).

:class:`StreamCall` sends one request on a :class:`Connection`, feeds each
stream line through a dialect into a :class:`~tokenswarm.measure.StreamMeasure`
and classifies the outcome into exactly one :class:`RequestRecord`. The HTTP/1.1
framing (:mod:`tokenswarm.http.framing`) is sans-IO: this module does every
socket read itself. Where requests go: :mod:`tokenswarm.http.target`.
"""

from __future__ import annotations

import bisect
import email.utils
import itertools
import json
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from tokenswarm.dialects.base import Dialect, MalformedEvent, error_text
from tokenswarm.http.framing import ProtocolError, ResponseReader, content_decoder, request_head
from tokenswarm.http.target import Target
from tokenswarm.measure import (
    CONNECT_ERROR,
    DISCONNECT,
    EMPTY,
    HTTP_ERROR,
    MALFORMED,
    SERVER_ERROR_EVENT,
    STATUS_CANCELLED,
    STATUS_OK,
    TIMEOUT,
    TRUNCATED,
    Event,
    RequestRecord,
    StreamMeasure,
)
from tokenswarm.sse import SSEDecoder, SSEEvent

__all__ = ["Connection", "StreamCall", "request_head", "error_message", "json_error", "retry_after_s", "printable"]

RECV_SIZE = 65536
#: Linux's SO_TIMESTAMPNS: the kernel stamps each read with when its last bytes reached the socket
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: Linux's SO_TIMESTAMPING (transmit stamps): software TX stamp, reported, counted in bytes, no payload back
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
TX_FLAGS = (1 << 1) | (1 << 4) | (1 << 7) | (1 << 11)  # TX_SOFTWARE | SOFTWARE | OPT_ID | OPT_TSONLY
SCM_TSTAMP_SND = 0  # sock_extended_err.ee_info of the stamp taken as the bytes left for the device
SO_EE_ORIGIN_TIMESTAMPING = 4
_IP_RECVERR = (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11))
_IPV6_RECVERR = (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25))
# a read carries SO_TIMESTAMPNS and, once transmit stamps are on, SCM_TIMESTAMPING (3 timespecs) too
_ANC_SIZE = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(48) if hasattr(socket, "CMSG_SPACE") else 128
_ERRQ_SIZE = 512
_TIMESPEC = struct.Struct("qq")
_EXT_ERR = struct.Struct("IBBBBII")  # struct sock_extended_err
MAX_RX_LAG_S = 600.0  # a kernel stamp older than this is not trusted (a clock step): the read's own time is used
MAX_TX_LAG_S = 1.0  # a transmit stamp further than this from the send call is not trusted
TX_LATE_READS = 8  # after a send whose stamp was not there yet, this many reads drain the error queue first
MAX_ERROR_BODY = 65536  # bytes of an error response kept for its message
ERROR_TEXT_LEN = 200  # characters of an error kept in a record
DONE_GRACE_S = 2.0  # after the end marker, how long to wait for the end of the HTTP message
#: after a complete answer with no end marker yet (finish reason, and the usage when it was asked for), how long
#: to wait for the marker or the end of the HTTP message before closing the connection: a server that sends
#: them does so at once (the same write, or the next); one that keeps the stream open (heartbeats, silence)
#: holds no user longer than this
COMPLETE_GRACE_S = 0.25
TIMING_READ = "read"  # requests.csv timing_source: the reads' kernel stamps, with their error bounds
TIMING_CAPTURE = "capture"  # the packet capture's stamps (--timing capture): exact, bound 0
#: --timing capture: how long a finished request waits for the capture to have read its last segment (the ring
#: hands a block over every few ms), polling this often; past it the request keeps its read times
CAPTURE_WAIT_S = 0.25
CAPTURE_POLL_S = 0.003
CAPTURE_SLACK_S = 0.005  # the capture's stamps and perf_counter may differ by this much (two clock readings)

perf_counter = time.perf_counter
wall_time = time.time


class Connection:
    """One HTTP/1.1 connection to a target, opened lazily and kept alive between requests."""

    def __init__(
        self,
        target: Target,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ssl_context: ssl.SSLContext | None = None,
        capture: Any = None,
    ) -> None:
        self.target = target
        #: the process's packet capture (:class:`tokenswarm.capture.Capture`, --timing capture), else None
        self.capture = capture
        self.sent = 0  # bytes written on this socket: the offset of the next request's first byte
        self.got = 0  # bytes read from this socket: the offset of the next response's first byte
        self.local_port = 0
        self.connect_span = (0.0, 0.0)  # perf_counter before and after connect(): the SYN was sent within it
        self.captured: Any = None  # the capture's record of this socket's connection, once found
        #: the bytes of each read of the current response, kept for the capture's times (None: not kept)
        self.keep: list[bytes] | None = None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.sock: socket.socket | None = None
        self.requests_on_sock = 0
        self.stamped = False  # reads carry the kernel's receive time (plain TCP on Linux)
        self.tx_stamped = False  # sends get the kernel's transmit time (plain TCP to a loopback address, Linux)
        self.tx_bytes = 0  # bytes written since transmit stamps were turned on (their OPT_ID counter)
        self.tx_late = 0  # reads left that drain the error queue first: a send's stamp was not there yet
        # the bounds of the last read (:meth:`recv`): its bytes reached the socket in [floor, its stamp]
        self.floor = 0.0
        self.kernel = False  # the last read's stamp was the kernel's, and the read took all that had come
        self._next_floor = 0.0
        if target.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.ssl_context = ssl_context

    def open(self) -> float:
        """Connect now; returns the seconds it took."""
        t0 = perf_counter()
        sock = socket.create_connection((self.target.host, self.target.port), timeout=self.connect_timeout)
        self.connect_span = (t0, perf_counter())
        self.sent = self.got = 0
        self.captured = None
        stamped = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.target.host)
            else:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    stamped = hasattr(sock, "recvmsg")
                except OSError:
                    stamped = False  # not Linux: reads are timed when they return
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        if self.capture is not None:
            try:
                self.local_port = sock.getsockname()[1]
            except (OSError, IndexError):
                self.local_port = 0
        self.stamped = stamped
        self.tx_stamped = stamped and _loopback(sock) and _tx_stamps_on(sock)
        self.tx_bytes = 0
        self.requests_on_sock = 0
        return perf_counter() - t0

    def send(self, sock: socket.socket, payload: bytes) -> float:
        """Write ``payload``; returns the perf_counter time it was sent: the kernel's transmit stamp of its
        last byte where it gives one (:attr:`tx_stamped`), else the moment just before the write. It also
        starts the read bounds (:meth:`recv`): no byte of the answer can come before it."""
        before = perf_counter()
        sock.sendall(payload)
        self.sent += len(payload)
        send = before
        if self.tx_stamped:
            self.tx_bytes += len(payload)
            stamp = self._tx_stamp(sock, self.tx_bytes - 1)
            if stamp is not None and -MAX_TX_LAG_S < stamp - before < MAX_TX_LAG_S:
                send = stamp
            elif stamp is None:
                # the kernel deferred the segment and will stamp it later: the stamp would then sit in the
                # error queue, which wakes a waiting reader for nothing until read; the next reads drain it
                self.tx_late = TX_LATE_READS
        self._next_floor = send
        self.floor = send
        return send

    def _tx_stamp(self, sock: socket.socket, last_byte: int) -> float | None:
        """The transmit stamp (perf_counter) of byte ``last_byte`` (the OPT_ID counter), from the socket's
        error queue, drained whole so it never signals an error to a waiting reader; None when the kernel
        has not (yet) stamped it: the caller keeps its own stamp. On loopback the stamp is taken inside the
        write call, so it is there when the write returns."""
        found = None
        timeout = sock.gettimeout()
        sock.settimeout(0.0)  # a cooperative socket would otherwise wait for an empty error queue to fill
        try:
            while True:
                try:
                    _d, anc, _f, _a = sock.recvmsg(0, _ERRQ_SIZE, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.tx_stamped = False  # the platform refused the error queue: user-space send stamps
                    break
                if not anc:
                    break
                stamp = _tx_entry(anc, last_byte)
                if stamp is not None:
                    found = perf_counter() - (wall_time() - stamp)
        finally:
            sock.settimeout(timeout)
        return found

    def _tx_drain(self, sock: socket.socket) -> bool:
        """Read the error queue empty (stamps of earlier sends, come late); True when it held any."""
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        got = False
        try:
            while True:
                try:
                    sock.recvmsg(0, _ERRQ_SIZE, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
                    got = True
                except OSError:  # empty (EAGAIN), or refused
                    break
        finally:
            sock.settimeout(timeout)
        return got

    def recv(self, sock: socket.socket) -> tuple[bytes, float]:
        """Read what has arrived: (bytes, the perf_counter time they reached this host).

        With kernel timestamps (``stamped``) the time is when the read's last bytes reached the socket, as the
        kernel stamped them, not when this process got round to reading them: a client busy with other
        streams (hundreds of first tokens arriving in the same millisecond) adds none of its own delay.
        Otherwise it is the moment the read returned.

        The read's bounds, kept for the caller: every byte it returned reached the socket no earlier than
        :attr:`floor` (the later of the previous read's start and the previous read's stamp: bytes still
        unread then came after both; the send for the first read) and no later than the returned time.
        :attr:`kernel` says whether the returned time is the kernel's stamp of the read's last byte, hence
        exact for whatever that byte completed. Where the kernel has merged segments that waited in the
        socket, the stamp is the newest one's: only the last byte's arrival is known, the rest lies in the
        interval.
        """
        if self.tx_late:
            self.tx_late -= 1
            if self._tx_drain(sock):
                self.tx_late = 0
        start = perf_counter()
        if not self.stamped:
            data = sock.recv(RECV_SIZE)
            t = perf_counter()
            kernel = False
        else:
            data, anc, _flags, _addr = sock.recvmsg(RECV_SIZE, _ANC_SIZE)
            t = perf_counter()
            kernel = False
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(raw)
                    lag = wall_time() - sec - nsec * 1e-9
                    if 0.0 < lag < MAX_RX_LAG_S:
                        t -= lag
                        kernel = True
                    break
        self.got += len(data)
        if self.keep is not None:
            self.keep.append(data)
        self.floor = floor = self._next_floor
        if len(data) >= RECV_SIZE or (self.ssl_context is not None and sock.pending()):
            self.kernel = False  # bytes were left behind: the stamp may belong to a later segment
        else:
            self.kernel = kernel
            self._next_floor = max(floor, start, t)
        return data, t

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


def error_message(body: bytes) -> str:
    """The readable part of an error response body (JSON ``error.message`` and the like)."""
    text = body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return _readable(body)
    if isinstance(obj, dict):
        for key in ("error", "message", "detail", "msg"):
            val = obj.get(key)
            if isinstance(val, dict):
                val = val.get("message") or val.get("msg") or val
            if val:
                return str(val)[:ERROR_TEXT_LEN]
    return text[:ERROR_TEXT_LEN]


class StreamCall:
    """One streamed request, sent on a connection and measured into a record.

    ``run()`` never raises for anything the server or network did: every
    outcome becomes exactly one record. If the caller is interrupted (a
    greenlet killed at test end), it calls :meth:`abort` to get the record of
    what was measured so far, marked ``cancelled``.
    """

    def __init__(
        self,
        conn: Connection,
        dialect: Dialect,
        head: bytes,
        body: bytes,
        request_id: str,
        input_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        cancel_after: int | None = None,
        whole: bool = False,
        await_usage: bool = False,
    ) -> None:
        self.conn = conn
        self.whole = whole  # answered by one JSON body, not a stream (Dialect.whole): measured as E2E only
        #: the usage was asked for and comes after the finish reason (:attr:`Dialect.usage_after_finish`): the
        #: answer is complete once both are in
        self.await_usage = await_usage
        self.lingered = False
        self.cancel_after = cancel_after  # abandon the stream after this many output events (a user leaving)
        self.dialect = dialect
        self.payload = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        self.method = head.split(b" ", 1)[0].decode("latin-1")  # a HEAD request's answer has no body
        self.request_id = request_id
        self.input_tokens = input_tokens
        self.count_tokens = count_tokens
        self.measure: StreamMeasure | None = None
        self.connect_s: float | None = None
        self.http_status: int | None = None
        self.received = 0  # bytes read from the socket for this response
        # --timing capture: the output events' SSE event numbers (None: read timing), the first visible one's,
        # SSE events taken, the response's first byte on the connection's receive stream, the request's last
        # byte on its send stream
        self.marks: list[int] | None = None
        self.visible_no = -1
        self.sse_seen = 0
        self.ev_reads: list[int] = []  # the read (index into Connection.keep) that completed each SSE event
        self.rx0 = 0
        self.tx_last = 0

    # -- outcome helpers -------------------------------------------------------
    def _rec(self, status: str, error: str = "", closed: float | None = None, wait: bool = True) -> RequestRecord:
        m = self.measure or StreamMeasure(perf_counter())
        source = TIMING_READ
        if self.marks is not None:
            if self.marks and m.times and self._capture_times(m, wait):
                source = TIMING_CAPTURE
            self.conn.keep = None
            self.marks = None
        rec = m.record(
            self.request_id,
            status,
            closed=closed,
            http_status=self.http_status,
            error=printable(error)[:ERROR_TEXT_LEN] if error else "",
            input_tokens=self.input_tokens,
            count_tokens=self.count_tokens,
        )
        if self.connect_s is not None:
            rec.connect_ms = self.connect_s * 1000.0
        rec.received_bytes = self.received
        rec.request_bytes = len(self.payload)
        rec.lingered = self.lingered
        rec.timing_source = source
        return rec

    def _capture_times(self, m: StreamMeasure, wait: bool) -> bool:
        """Put the packet capture's stamps on ``m`` (--timing capture): the send is when the segment carrying the
        request's last byte passed the interface, each output event when every byte up to its own last one had
        (:meth:`tokenswarm.capture.Direction.delivered`); their error bounds become 0. Waits (cooperatively, up
        to :data:`CAPTURE_WAIT_S` when ``wait``) for the capture to have read that far. False, ``m`` untouched,
        when the capture has not seen it all (a dropped or missed segment, a connection opened before it
        started, a TLS stream): the read stamps and their bounds stay."""
        deadline = perf_counter() + (CAPTURE_WAIT_S if wait else 0.0)
        while True:
            got = self._from_capture()
            if got is not None:
                break
            if perf_counter() >= deadline:
                return False
            time.sleep(CAPTURE_POLL_S)
        send, stamps = got
        assert self.marks is not None
        times = [stamps[i] for i in self.marks]
        m.send = send
        m.times = times
        m.first = times[0]
        if self.visible_no >= 0:
            m.first_visible = stamps[self.visible_no]
        m.first_bound = m.last_bound = 0.0
        return True

    def _from_capture(self) -> tuple[float, list[float]] | None:
        """(the send's stamp, each SSE event's stamp) from the capture, or None while it lacks any byte of them.

        An event completed by a read that lay inside one segment takes that segment's stamp (its last byte came
        with it). Where such a read spanned the end of one segment and bytes of the next (the client read late),
        the response's bytes are read again piece by piece, cut where the server's segments ended, so each event
        gets the stamp of the segment that completed it (framing, compression and line ends as the live read had
        them); it must give at least the events the live read took."""
        conn = self.conn
        raw = b"".join(conn.keep or ())
        if not raw or conn.ssl_context is not None:
            return None
        conn.capture.drain()
        c = conn.captured
        if c is None:
            t0, t1 = conn.connect_span
            c = conn.capture.table.connection(conn.local_port, t0 - CAPTURE_SLACK_S, t1 + CAPTURE_SLACK_S)
            if c is None or c.rx is None:
                return None
            conn.captured = c
        rx = c.rx
        rx0, n = self.rx0, len(raw)
        if rx.top < rx0 + n or c.tx.top <= self.tx_last:
            return None  # the capture has not read that far (cheap: asked again every CAPTURE_POLL_S)
        send = c.tx.delivered([self.tx_last], self.tx_last + 1 - len(self.payload))[0]
        if send is None:
            return None
        cuts = sorted({e - rx0 for _s, e, _t in list(rx.segs) if rx0 < e < rx0 + n})
        ev_reads = self.ev_reads
        if len(ev_reads) == self.sse_seen:
            # the usual case: no read that completed an event held the end of one segment and bytes of the next,
            # so each event's last byte came with its read's last: that byte's stamp, no reading again
            ends = list(itertools.accumulate(len(r) for r in conn.keep or ()))
            used = sorted(set(ev_reads))
            if all(bisect.bisect_right(cuts, ends[r] - len(conn.keep[r])) == bisect.bisect_left(cuts, ends[r])
                   for r in used):
                at = rx.delivered([rx0 + ends[r] - 1 for r in used], rx0)
                if None in at:
                    return None
                by_read = dict(zip(used, at))
                stamps = [by_read[r] for r in ev_reads]
                rx.release(rx0 + n)
                c.tx.release(self.tx_last + 1)
                return send, stamps  # type: ignore[return-value]
        cuts.append(n)
        whens = rx.delivered([rx0 + x - 1 for x in cuts], rx0)
        if whens[-1] is None:
            return None
        reader = ResponseReader(self.method)
        sse = SSEDecoder()
        inflate = None
        decided = False
        stamps: list[float] = []
        prev = 0
        try:
            for x, when in zip(cuts, whens):
                body = reader.feed(raw[prev:x])
                prev = x
                if not decided and reader.head is not None:
                    decided = True
                    coding = reader.head.headers.get("content-encoding")
                    if coding is not None and coding.strip().lower() not in ("", "identity"):
                        inflate = content_decoder(coding)
                if body:
                    if inflate is not None:
                        body = inflate(body)
                    stamps.extend([when] * len(sse.feed(body)))  # type: ignore[list-item]
        except ProtocolError:
            return None
        if sse.close() is not None:
            stamps.append(whens[-1])
        if len(stamps) < self.sse_seen:  # (events after the one that ended the request were never taken)
            return None
        rx.release(rx0 + n)
        c.tx.release(self.tx_last + 1)
        return send, stamps

    def text(self) -> str:
        """The generated text received so far (reasoning excluded)."""
        return "".join(self.measure.text) if self.measure is not None else ""

    def abort(self, reason: str = "stopped by the client") -> RequestRecord:
        """Record of an interrupted call (the connection is closed, its state unknown)."""
        self.conn.close()
        return self._rec(STATUS_CANCELLED, reason, closed=perf_counter(), wait=False)

    # -- the request -------------------------------------------------------------
    def run(self) -> RequestRecord:
        conn = self.conn
        retried = False
        while True:
            reused = conn.sock is not None
            if not reused:
                try:
                    self.connect_s = conn.open()
                except TimeoutError:
                    return self._rec(CONNECT_ERROR, f"connect timeout after {conn.connect_timeout:g}s")
                except OSError as e:
                    return self._rec(CONNECT_ERROR, f"cannot connect to {conn.target.netloc}: {_oserr(e)}")
            sock = conn.sock
            assert sock is not None
            self.measure = m = StreamMeasure(perf_counter())
            if conn.capture is not None:
                conn.keep = []
                self.marks = []
                self.visible_no = -1
                self.sse_seen = 0
                self.ev_reads = []
                self.rx0 = conn.got
                self.tx_last = conn.sent + len(self.payload) - 1
            try:
                m.send = conn.send(sock, self.payload)
                data, t = conn.recv(sock)
            except TimeoutError:
                conn.close()
                return self._rec(TIMEOUT, f"no response within {conn.read_timeout:g}s", closed=perf_counter())
            except OSError as e:
                conn.close()
                if reused and not retried:
                    retried = True  # the server closed an idle keep-alive connection: retry once, fresh
                    continue
                return self._rec(DISCONNECT, f"connection lost before the response: {_oserr(e)}")
            if not data:
                conn.close()
                if reused and not retried:
                    retried = True
                    continue
                return self._rec(DISCONNECT, "connection closed before the response")
            conn.requests_on_sock += 1
            self.received = len(data)
            try:
                return self._read(sock, data, t)
            except TimeoutError:
                conn.close()
                return self._rec(TIMEOUT, f"no data for {conn.read_timeout:g}s", closed=perf_counter())
            except ProtocolError as e:
                conn.close()
                return self._rec(MALFORMED, f"bad HTTP response: {e}", closed=perf_counter())
            except OSError as e:
                conn.close()
                return self._rec(DISCONNECT, f"connection lost mid-stream: {_oserr(e)}", closed=perf_counter())

    def _read(self, sock: socket.socket, raw: bytes, t: float) -> RequestRecord:
        """The response: its head, then the stream (or an error body); ``t`` is when ``raw`` arrived."""
        conn = self.conn
        reader = ResponseReader(self.method)
        body = reader.feed(raw)
        while reader.head is None:
            data, t = conn.recv(sock)
            if not data:
                conn.close()
                return self._rec(DISCONNECT, "connection closed inside the response headers")
            self.received += len(data)
            body = reader.feed(data)
        head = reader.head
        self.http_status = head.status
        if not 200 <= head.status < 300:
            return self._read_error(sock, reader, body)
        if self.whole:
            return self._read_whole(sock, reader, body, t)
        ctype = head.headers.get("content-type", "").lower()
        if "json" in ctype and "event-stream" not in ctype:
            return self._read_json(sock, reader, body, ctype)
        coding = head.headers.get("content-encoding")
        inflate = None
        if coding is not None and coding.strip().lower() not in ("", "identity"):
            inflate = content_decoder(coding)  # the server compressed the stream anyway (or was asked to)
            if inflate is None:
                self.conn.close()
                return self._rec(MALFORMED, f"the event stream came with Content-Encoding {coding}, which cannot "
                                 f"be decoded here (gzip and deflate can; --accept-encoding says what to ask for)",
                                 closed=perf_counter())
        return self._stream(sock, reader, body, t, inflate)

    def _stream(self, sock: socket.socket, reader: ResponseReader, body: bytes, t: float,
                inflate: Callable[[bytes], bytes] | None = None) -> RequestRecord:
        """Read the event stream to its end: each server-sent event is parsed by the dialect and fed to the
        measure with the time the read that completed it arrived (:meth:`Connection.recv`). ``body`` is what
        the read that completed the head held of the body; ``inflate`` decodes a compressed body incrementally
        (each event is timed by the read that completed its decoded bytes).

        The request is complete at its end marker, or at its finish reason (and its usage, when it was asked
        for and comes after it): from then on the server gets :data:`COMPLETE_GRACE_S` (after the end marker
        :data:`DONE_GRACE_S`) to end the HTTP message; a server that keeps the stream open past it (heartbeat
        comments, silence) has the connection closed, not reused, and the record says it ``lingered``.
        Silence after a complete answer is never a timeout."""
        m = self.measure
        assert m is not None
        parse = self.dialect.stream().parse_event
        recv = self.conn.recv
        feed = reader.feed
        conn = self.conn
        sse = SSEDecoder()
        take = self._take
        await_usage = self.await_usage
        deadline = 0.0  # once the answer is complete: when to stop waiting for the end of the HTTP message
        events = 0
        first_bytes = b""  # the body's first bytes, for the message when no event ever comes
        while True:
            if body:
                if inflate is not None:
                    body = inflate(body)
                if not events and len(first_bytes) < ERROR_TEXT_LEN:
                    first_bytes += body[:ERROR_TEXT_LEN]
                evs = sse.feed(body)
                if evs:
                    # an event whose last byte ended the read has the read's kernel stamp for its own; any
                    # other arrived somewhere between the read's floor and its stamp
                    spread = t - conn.floor if t > conn.floor else 0.0
                    last = len(evs) - 1 if conn.kernel and sse.ended_at_event and reader.ended_in_body else -1
                    for i, sev in enumerate(evs):
                        events += 1
                        end = take(parse, sev, t, 0.0 if i == last else spread)
                        if end is not None:
                            return end
            if reader.complete:
                break
            if deadline:
                left = deadline - perf_counter()
                if left <= 0.0:
                    self.lingered = True  # the answer is complete; the server still holds the stream open
                    self.conn.close()
                    break
                sock.settimeout(left)
            elif m.done or (m.finish is not None and (m.usage is not None or not await_usage)):
                # the answer is complete: wait only briefly for the end of the HTTP message
                grace = min(DONE_GRACE_S if m.done else COMPLETE_GRACE_S, self.conn.read_timeout)
                deadline = perf_counter() + grace
                sock.settimeout(grace)
            try:
                data, t = recv(sock)
            except TimeoutError:
                if not deadline:
                    raise
                self.lingered = True
                self.conn.close()  # the server never ended the message; the stream itself is complete
                break
            self.received += len(data)
            if not data:
                reader.eof()
                if reader.complete:
                    break
                self.conn.close()
                return self._rec(DISCONNECT, "connection closed mid-stream", closed=t)
            body = feed(data)
        last = sse.close()  # an event whose final blank line never came (read leniently)
        if last is not None:
            events += 1
            end = take(parse, last, t, t - conn.floor if t > conn.floor else 0.0)
            if end is not None:
                return end
        if not reader.reusable:
            self.conn.close()
        elif deadline and self.conn.sock is not None:
            self.conn.sock.settimeout(self.conn.read_timeout)
        if not events:
            if first_bytes.strip():
                return self._rec(MALFORMED, f"no server-sent events in the 200 response: "
                                 f"{_readable(first_bytes)}", closed=t)
            return self._rec(EMPTY, "the server's 200 event stream ended with no events", closed=t)
        if not m.output_events and reader.complete:
            return self._rec(EMPTY, "stream carried no output", closed=t)
        # a stream missing its end marker failed, unless the HTTP message ended in order after a finish
        # reason (`transformers serve` sends no [DONE]) or the answer was complete and the server lingered; a
        # stream cut short has no finish reason
        if not m.done and self.dialect.needs_end_marker and not (m.finish and (reader.complete or self.lingered)):
            return self._rec(DISCONNECT, "stream ended without its end marker ([DONE])", closed=t)
        if not m.output_events:
            return self._rec(EMPTY, "stream carried no output", closed=t)
        if m.finish is None and self.dialect.sends_finish:
            # ended in order, yet never said it finished: a gateway closing a dead upstream's stream itself
            return self._rec(TRUNCATED, f"the stream ended without a finish reason after {m.output_events} "
                             f"output events (cut short upstream?)", closed=t)
        return self._rec(STATUS_OK, closed=t)

    def _take(self, parse: Callable[[SSEEvent], Event | None], sev: SSEEvent, t: float,
              bound: float = 0.0) -> RequestRecord | None:
        """One server-sent event, arrived at ``t`` (no more than ``bound`` seconds earlier): parsed and fed to
        the measure. Returns the request's record when the event ends it (not JSON, the server's error, the
        client's cancel), else None."""
        self.sse_seen += 1
        if self.marks is not None:
            self.ev_reads.append(len(self.conn.keep or ()) - 1)
        try:
            ev = parse(sev)
        except MalformedEvent as e:
            self.conn.close()
            return self._rec(MALFORMED, str(e), closed=t)
        if ev is None:
            return None
        m = self.measure
        assert m is not None
        marks = self.marks
        if marks is None:
            m.feed(t, ev, bound)
        else:
            n = len(m.times)
            visible = m.first_visible
            m.feed(t, ev, bound)
            if len(m.times) > n:
                marks.append(self.sse_seen - 1)
            if visible is None and m.first_visible is not None:
                self.visible_no = self.sse_seen - 1
        if m.error is not None:
            self.conn.close()
            return self._rec(SERVER_ERROR_EVENT, m.error, closed=t)
        cancel_at = self.cancel_after
        if cancel_at and len(m.times) >= cancel_at and not m.done:
            self.conn.close()  # the user went away: the server sees the connection close
            return self._rec(STATUS_CANCELLED, f"cancelled by the client after {cancel_at} tokens", closed=t)
        return None

    def _body(self, sock: socket.socket, reader: ResponseReader, first: bytes) -> bytes:
        """A whole (not streamed) response body, up to MAX_ERROR_BODY bytes; ``first`` is what the read that
        completed the head held of it. The connection is closed unless the message ended in order and may be
        reused."""
        parts = [first]
        size = len(first)
        while not reader.complete and size < MAX_ERROR_BODY:
            data = sock.recv(RECV_SIZE)
            self.conn.got += len(data)
            if not data:
                reader.eof()
                break
            self.received += len(data)
            part = reader.feed(data)
            parts.append(part)
            size += len(part)
        if not reader.reusable:
            self.conn.close()
        return b"".join(parts)

    def _decoded_body(self, sock: socket.socket, reader: ResponseReader, first: bytes) -> bytes:
        """:meth:`_body`, decoded when the server compressed it (gzip, deflate); as received otherwise."""
        body = self._body(sock, reader, first)
        head = reader.head
        coding = head.headers.get("content-encoding") if head is not None else None
        if coding and body:
            inflate = content_decoder(coding)
            if inflate is not None:
                try:
                    return inflate(body)
                except ProtocolError:
                    pass
        return body

    def _read_json(self, sock: socket.socket, reader: ResponseReader, first: bytes, ctype: str) -> RequestRecord:
        """A 2xx JSON body where a stream was asked for: a gateway's error in a 200 (its own words kept), or
        a whole answer from a server that ignored ``stream: true``."""
        body = self._decoded_body(sock, reader, first)
        t = perf_counter()
        msg = json_error(body)
        if msg is not None:
            return self._rec(SERVER_ERROR_EVENT, f"HTTP {self.http_status} with an error body: {msg}", closed=t)
        return self._rec(MALFORMED, f"got {ctype or 'JSON'}, not an event stream (did the server ignore "
                         f"stream=true?): {_readable(body)}", closed=t)

    def _read_whole(self, sock: socket.socket, reader: ResponseReader, first: bytes, t: float) -> RequestRecord:
        """A whole 2xx answer asked for so (``stream: false``, embeddings, rerank), read to its end and parsed by
        the dialect (``parse_whole``). E2E is when its last bytes arrived (``t``: the read's receive time); TTFT,
        TPOT and ITL are not figures of it (left empty)."""
        parts = [first]
        while not reader.complete:
            data, t = self.conn.recv(sock)
            if not data:
                reader.eof()
                if reader.complete:
                    break
                self.conn.close()
                return self._rec(DISCONNECT, "connection closed inside the answer", closed=t)
            self.received += len(data)
            parts.append(reader.feed(data))
        if not reader.reusable:
            self.conn.close()
        body = b"".join(parts)
        try:
            obj = json.loads(body)
            if not isinstance(obj, dict):
                raise MalformedEvent(f"not a JSON object: {_readable(body)}")
            ev = self.dialect.parse_whole(obj)
        except ValueError as e:  # MalformedEvent included
            return self._rec(MALFORMED, str(e) if isinstance(e, MalformedEvent) else f"not JSON: {_readable(body)}",
                             closed=t)
        m = self.measure
        assert m is not None
        m.feed(t, ev)
        rec = self._rec(SERVER_ERROR_EVENT if m.error is not None else STATUS_OK, m.error or "", closed=t)
        rec.e2e_ms = (t - m.send) * 1000.0
        rec.ttft_ms = rec.ttft_visible_ms = rec.tpot_ms = None
        rec.itl_ms = []
        return rec

    def _read_error(self, sock: socket.socket, reader: ResponseReader, first: bytes) -> RequestRecord:
        head = reader.head
        assert head is not None
        body = self._decoded_body(sock, reader, first)
        msg = error_message(body) or head.reason
        rec = self._rec(HTTP_ERROR, f"HTTP {head.status}: {msg}", closed=perf_counter())
        if head.status in (429, 503):
            rec.retry_after_s = retry_after_s(head.headers.get("retry-after", ""))
        return rec


def _tx_entry(anc: list[tuple[int, int, bytes]], last_byte: int) -> float | None:
    """The software transmit stamp (CLOCK_REALTIME seconds) in one error-queue message's control data, when
    it stamps byte ``last_byte`` (the OPT_ID byte counter); else None (another kind of stamp, another send)."""
    wall = None
    info = key = -1
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            wall = sec + nsec * 1e-9
        elif (level, kind) in (_IP_RECVERR, _IPV6_RECVERR) and len(data) >= _EXT_ERR.size:
            _errno, origin, _t, _c, _p, info, key = _EXT_ERR.unpack_from(data)
            if origin != SO_EE_ORIGIN_TIMESTAMPING:
                info = -1
    return wall if wall is not None and info == SCM_TSTAMP_SND and key == last_byte else None


def _loopback(sock: socket.socket) -> bool:
    """Is the socket's peer this host (127.0.0.0/8, ::1)? Transmit stamps are asked there only: on loopback
    the kernel stamps within the write call, elsewhere a driver may stamp later, after the error queue was
    read."""
    try:
        host = sock.getpeername()[0]
    except (OSError, IndexError):
        return False
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1") or host.startswith("::ffff:127.")


def _tx_stamps_on(sock: socket.socket) -> bool:
    """Ask the kernel for software transmit stamps on ``sock``; False where it refuses (not Linux, an old
    kernel): the send is then stamped in user space."""
    if not hasattr(socket, "MSG_ERRQUEUE"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_FLAGS)
    except OSError:
        return False
    return True


def json_error(body: bytes) -> str | None:
    """The message of a JSON error body (``{"error": ...}``, ``{"object": "error", ...}``, ``{"detail": ...}``
    without a ``choices`` list); None when the body is not such an error."""
    try:
        obj = json.loads(body[:MAX_ERROR_BODY].decode("utf-8", "replace"))
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    msg = error_text(obj)
    if msg is None and "detail" in obj and "choices" not in obj:
        msg = str(obj["detail"])
    return msg[:ERROR_TEXT_LEN] if msg is not None else None


def retry_after_s(value: str, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delta-seconds or an HTTP date (RFC 9110 10.2.3); None
    when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


_TAG = re.compile(r"<[^>]*>")


def _readable(body: bytes) -> str:
    """A short readable form of a body: HTML tags and runs of white space removed; a body that is not text
    (compressed, binary) is named by its size and first bytes in hex, never copied."""
    text = body[:MAX_ERROR_BODY].decode("utf-8", "replace")
    sample = text[:ERROR_TEXT_LEN]
    if sum(1 for c in sample if c == "\ufffd" or not (c.isprintable() or c.isspace())) * 10 > len(sample):
        return f"{len(body)} bytes that are not text, starting {body[:8].hex(' ')}"
    if text.lstrip().startswith("<"):
        text = _TAG.sub(" ", text)
    return " ".join(text.split())[:ERROR_TEXT_LEN]


def printable(text: str) -> str:
    """``text`` with every character that does not print (control characters, NUL) written as its escape
    (``\\x08``): what a record stores and a terminal shows is always text, never raw bytes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else (" " if c in "\t\n\r" else c.encode("unicode_escape").decode("ascii"))
                   for c in text)


def _oserr(e: OSError) -> str:
    return e.strerror or type(e).__name__
