"""Every event's arrival interval (tokenswarm.client.Connection.recv's floor and stamp): exact when the event's
last byte ended a kernel-stamped read, else bounded; and the kernel's transmit stamp of the send."""

import socket
import struct
import threading
import time

import pytest

from streamserver import LoopbackServer, chunk, late_first_read, response_head
from tokenswarm import client
from tokenswarm.client import Connection, StreamCall
from tokenswarm.dialects import get_dialect
from tokenswarm.http.framing import ResponseReader
from tokenswarm.http.target import Target
from tokenswarm.measure import EPOCH_OFFSET
from tokenswarm.sse import SSEDecoder

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
#: the answer's end: a finish reason (a stream ending without one is `truncated`), then [DONE]
DONE = (chunk(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
        + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def ev(text: str) -> bytes:
    return chunk(b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text.encode())


class TimedServer:
    """A real TCP server on loopback: after the request, sends ``pieces`` with the given delays and notes the
    perf_counter times just before and just after each write (on loopback a write delivers within the call)."""

    def __init__(self, pieces: list[bytes], delays: list[float]) -> None:
        self.pieces, self.delays = pieces, delays
        self.before: list[float] = []
        self.after: list[float] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        c, _ = self.sock.accept()
        with c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            req = b""
            while b"\r\n\r\n" not in req:
                req += c.recv(65536)
            for piece, delay in zip(self.pieces, self.delays):
                time.sleep(delay)
                self.before.append(time.perf_counter())
                c.sendall(piece)
                self.after.append(time.perf_counter())

    def close(self) -> None:
        self.thread.join(timeout=5)
        self.sock.close()


def _run(srv: TimedServer, late_s: float = 0.0):
    conn = Connection(Target("http", "127.0.0.1", srv.port, ""), read_timeout=5.0)
    conn.open()
    if late_s:
        late_first_read(conn, late_s)
    try:
        rec = StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r").run()
    finally:
        conn.close()
        srv.close()
    return rec, conn, rec.start_time - EPOCH_OFFSET


TOL_MS = 0.5  # two clocks read a few microseconds apart turn the kernel's stamp into perf_counter time


def test_a_late_reader_bounds_the_events_the_kernel_merged_and_the_bound_covers_the_truth():
    # three tokens 40 ms apart; the client reads only after 300 ms, when all of them wait in the socket and
    # the read's stamp is the newest segment's: the first token's stamp is ~80 ms late, and its bound says so
    srv = TimedServer([response_head() + ev("a"), ev("b"), ev("c") + DONE], [0.05, 0.04, 0.04])
    rec, conn, send = _run(srv, late_s=0.3)
    assert rec.status == "ok", rec.error
    if not conn.stamped:
        pytest.skip("no kernel receive stamps on this platform")
    true_lo, true_hi = (srv.before[0] - send) * 1000, (srv.after[0] - send) * 1000
    assert rec.ttft_ms >= true_lo - TOL_MS
    assert rec.ttft_ms - rec.ttft_error_bound_ms <= true_hi + TOL_MS  # the interval holds the first arrival
    assert rec.ttft_ms - true_hi > 30.0  # the stamp alone was off (the kernel merged the segments) ...
    assert rec.ttft_error_bound_ms >= rec.ttft_ms - true_hi - TOL_MS  # ... and the bound covers the error
    e2e_lo = (srv.before[2] - send) * 1000  # the last token came with the end of the stream
    assert rec.e2e_ms >= e2e_lo - TOL_MS and rec.e2e_error_bound_ms > 0  # more bytes followed it in that read


def test_a_prompt_reader_has_exact_events_with_a_zero_bound():
    # each token alone in its segment, 100 ms apart, and the reader waiting: each read ends with its event
    srv = TimedServer([response_head(), ev("a"), ev("b"), DONE], [0.02, 0.1, 0.1, 0.1])
    rec, conn, send = _run(srv)
    assert rec.status == "ok", rec.error
    if not conn.stamped:
        pytest.skip("no kernel receive stamps on this platform")
    assert rec.ttft_error_bound_ms == 0.0 and rec.e2e_error_bound_ms == 0.0
    assert (srv.before[1] - send) * 1000 - TOL_MS <= rec.ttft_ms <= (srv.after[1] - send) * 1000 + TOL_MS
    assert (srv.before[2] - send) * 1000 - TOL_MS <= rec.e2e_ms <= (srv.after[2] - send) * 1000 + TOL_MS


class FakeConn(Connection):
    """Reads scripted: (bytes, stamp, kernel-stamped) per read, the floor following Connection.recv's rule."""

    def __init__(self, reads):
        super().__init__(Target("http", "127.0.0.1", 9, ""))
        self.reads = list(reads)
        self.sock = object()

    def open(self):
        return 0.0

    def send(self, sock, payload):
        self._next_floor = self.floor = 10.0
        return 10.0

    def recv(self, sock):
        data, t, kernel = self.reads.pop(0)
        self.floor = self._next_floor
        self.kernel = kernel
        self._next_floor = max(self.floor, t)
        return data, t


def _fake(reads):
    return StreamCall(FakeConn(reads), get_dialect("openai-chat"), HEAD, b"{}", "r").run()


def test_the_event_that_ended_a_read_is_exact_the_ones_before_it_are_bounded_by_the_floor():
    rec = _fake([(response_head(), 10.1, True), (ev("a") + ev("b"), 10.3, True), (ev("c") + DONE, 10.4, True)])
    assert rec.ttft_ms == pytest.approx(300.0)
    assert rec.ttft_error_bound_ms == pytest.approx(200.0)  # a: between the head's stamp and the read's stamp
    assert rec.e2e_error_bound_ms == pytest.approx(100.0)  # c: [DONE] followed it in the same read
    rec = _fake([(response_head() + ev("a"), 10.2, True), (ev("b"), 10.25, True), (DONE, 10.3, True)])
    assert rec.ttft_error_bound_ms == 0.0 and rec.e2e_error_bound_ms == 0.0


def test_without_a_kernel_stamp_no_event_is_exact():
    rec = _fake([(response_head() + ev("a"), 10.2, False), (ev("b"), 10.25, False), (DONE, 10.3, False)])
    assert rec.ttft_error_bound_ms == pytest.approx(200.0)  # anywhere since the send
    assert rec.e2e_error_bound_ms == pytest.approx(50.0)


def test_a_read_that_stopped_inside_an_event_or_its_framing_is_not_an_event_boundary():
    d = SSEDecoder()
    assert d.feed(b"data: 1\n\ndata: 2") and not d.ended_at_event  # event 2 began in the same read
    assert d.feed(b"\n\n") and d.ended_at_event
    assert d.feed(b"data: 3\n\n: keep-alive\n") and not d.ended_at_event  # a comment came after it
    assert d.feed(b"data: 4\r\n\r\n") and d.ended_at_event
    r = ResponseReader()
    r.feed(response_head() + b"5\r\nab")
    assert r.ended_in_body
    r.feed(b"cde\r\n")
    assert r.ended_in_body  # the chunk's closing CRLF travels with it
    r.feed(b"3\r\n")
    assert not r.ended_in_body  # the next chunk's size line: a later segment may have brought it
    r.feed(b"xyz\r\n0\r\n\r\n")
    assert not r.ended_in_body  # the end of the message came after the data


def test_the_send_is_the_kernels_transmit_stamp_on_loopback():
    srv = LoopbackServer(lambda c, head: None)
    conn = Connection(Target.parse(f"http://127.0.0.1:{srv.port}"), 2.0, 2.0)
    try:
        conn.open()
        if not conn.stamped:
            pytest.skip("no kernel timestamps on this platform")
        assert conn.tx_stamped
        for _ in range(3):  # the byte counter follows the connection from request to request
            before = time.perf_counter()
            send = conn.send(conn.sock, HEAD + b"Content-Length: 0\r\n\r\n")
            after = time.perf_counter()
            assert send != before  # not the user-space stamp
            assert before - TOL_MS / 1000 <= send <= after + TOL_MS / 1000
            assert conn.floor == send
    finally:
        conn.close()
        srv.close()


def test_without_transmit_stamps_the_send_is_stamped_before_the_write(monkeypatch):
    monkeypatch.setattr(client, "_tx_stamps_on", lambda sock: False)  # a platform that refuses them
    srv = LoopbackServer(lambda c, head: None)
    conn = Connection(Target.parse(f"http://127.0.0.1:{srv.port}"), 2.0, 2.0)
    try:
        conn.open()
        assert not conn.tx_stamped
        clock = iter([100.0, 200.0, 300.0])
        monkeypatch.setattr(client, "perf_counter", lambda: next(clock))
        assert conn.send(conn.sock, HEAD + b"Content-Length: 0\r\n\r\n") == 100.0  # read before the write
    finally:
        conn.close()
        srv.close()


def _errq(key: int, info: int = client.SCM_TSTAMP_SND, origin: int = client.SO_EE_ORIGIN_TIMESTAMPING):
    ts = struct.pack("qqqqqq", 1796000000, 500_000_000, 0, 0, 0, 0)
    ext = struct.pack("IBBBBII", 42, origin, 0, 0, 0, info, key)
    return [(socket.SOL_SOCKET, client.SO_TIMESTAMPING, ts), (socket.IPPROTO_IP, 11, ext)]


def test_a_transmit_stamp_counts_only_for_the_last_byte_of_this_send():
    assert client._tx_entry(_errq(99), 99) == pytest.approx(1796000000.5)
    assert client._tx_entry(_errq(42), 99) is None  # an earlier send's stamp, read late
    assert client._tx_entry(_errq(99, info=1), 99) is None  # the scheduler's stamp, not the device's
    assert client._tx_entry(_errq(99, origin=2), 99) is None  # a real error, not a stamp


def test_a_stamp_the_kernel_gives_late_is_drained_by_the_next_reads_and_the_send_keeps_its_own_stamp(monkeypatch):
    def answer(c, head):
        c.sendall(response_head())
        time.sleep(0.1)
        c.sendall(ev("a") + DONE)

    srv = LoopbackServer(answer)
    conn = Connection(Target.parse(f"http://127.0.0.1:{srv.port}"), 2.0, 2.0)
    drains = []
    try:
        conn.open()
        if not conn.tx_stamped:
            pytest.skip("no kernel transmit stamps on this platform")
        monkeypatch.setattr(conn, "_tx_stamp", lambda sock, key: None)  # not stamped yet when the write returned
        monkeypatch.setattr(conn, "_tx_drain", lambda sock: drains.append(1) or len(drains) == 2)
        before = time.perf_counter()
        send = conn.send(conn.sock, HEAD + b"Content-Length: 0\r\n\r\n")
        assert before <= send <= time.perf_counter() and conn.tx_late == client.TX_LATE_READS
        assert conn.recv(conn.sock)[0].startswith(b"HTTP/1.1 200")
        assert len(drains) == 1 and conn.tx_late == client.TX_LATE_READS - 1  # empty yet: the next read tries
        assert b"[DONE]" in conn.recv(conn.sock)[0]
        assert len(drains) == 2 and conn.tx_late == 0  # the stamp came and was read: no more draining
    finally:
        conn.close()
        srv.close()
