"""--timing capture: the segment table (byte offsets from sequence numbers, wrap, copies, order, holes, ports used
again), the client's events timed by the segment that completed each, and the fall back to the read stamps."""

import pytest

from streamserver import chunk, late_first_read, response_head
from tokenswarm import capture, client
from tokenswarm.capture import WRAP, Direction, SegmentTable
from tokenswarm.client import Connection, StreamCall
from tokenswarm.dialects import get_dialect
from tokenswarm.http.target import Target

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
DONE = (chunk(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
        + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def ev(text: str) -> bytes:
    return chunk(b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text.encode())


# -- the segment table ----------------------------------------------------------------------------------------
def test_in_order_segments_deliver_each_byte_at_its_own_segments_stamp():
    d = Direction(isn=1000)
    d.add(1001, 10, 1.0)  # bytes 0-9
    d.add(1011, 5, 2.0)  # bytes 10-14
    assert d.delivered([0, 9, 10, 14]) == [1.0, 1.0, 2.0, 2.0]
    assert d.delivered([15]) == [None]  # not seen yet


def test_sequence_numbers_wrap_past_two_to_the_32():
    isn = WRAP - 8
    d = Direction(isn)
    d.add(isn + 1, 4, 1.0)  # bytes 0-3: seq 2^32-7 .. 2^32-4
    d.add((isn + 5) % WRAP, 10, 2.0)  # bytes 4-13 cross the wrap
    d.add((isn + 15) % WRAP, 6, 3.0)  # bytes 14-19, seq small again
    assert d.top == 20
    assert d.delivered([3, 4, 13, 14, 19]) == [1.0, 2.0, 2.0, 3.0, 3.0]
    d.add((isn + 5) % WRAP, 10, 9.0)  # a copy of bytes 4-13 sent again after the wrap: still offset 4, not 2^32 on
    assert d.top == 20 and d.delivered([13]) == [2.0]


def test_a_segment_seen_twice_counts_at_its_first_copy():
    d = Direction(0)
    d.add(1, 100, 1.0)
    d.add(1, 100, 5.0)  # a retransmit
    d.add(101, 50, 2.0)
    assert d.delivered([99, 149]) == [1.0, 2.0]


def test_bytes_after_a_hole_are_delivered_when_the_hole_fills():
    d = Direction(0)
    d.add(1, 100, 1.0)
    d.add(201, 100, 2.0)  # bytes 200-299 before 100-199
    assert d.delivered([99, 250]) == [1.0, None]
    d.add(101, 100, 3.0)
    assert d.delivered([99, 150, 250]) == [1.0, 3.0, 3.0]  # 200-299 were readable only once 100-199 came


def test_delivered_counts_from_lo_and_released_segments_are_forgotten():
    d = Direction(0)
    d.add(1, 100, 1.0)
    d.add(101, 100, 2.0)
    d.release(100)
    assert d.delivered([150], lo=100) == [2.0]  # the first segment is no part of [100, 150]
    d.add(1, 100, 7.0)  # a late copy of released bytes: ignored
    d.add(201, 10, 3.0)  # the capture prunes released segments as it adds
    assert all(end > 100 for _s, end, _t in d.segs)


def test_a_port_used_again_is_a_new_connection_found_by_its_syn_time():
    t = SegmentTable()
    t.syn(5000, isn=10, stamp=1.0)
    t.synack(5000, isn=500)
    t.data(5000, False, 501, 20, 1.5)
    t.syn(5000, isn=10, stamp=1.01)  # the SYN again: the same connection
    t.syn(5000, isn=9999, stamp=8.0)  # the port used again
    t.synack(5000, isn=7000)
    t.data(5000, False, 7001, 30, 8.5)
    old, new = t.connection(5000, 0.9, 1.1), t.connection(5000, 7.9, 8.1)
    assert old is not None and new is not None and old is not new
    assert old.rx.delivered([19]) == [1.5] and new.rx.delivered([29]) == [8.5]
    assert t.connection(5000, 2.0, 3.0) is None and t.connection(6000, 0.0, 9.0) is None
    t.data(6000, False, 1, 10, 1.0)  # a connection the capture never saw open: ignored
    assert 6000 not in t.ports


# -- the client's events, timed by the capture ----------------------------------------------------------------
class FakeCapture:
    def __init__(self) -> None:
        self.table = SegmentTable()
        self.drained = 0

    def drain(self) -> int:
        self.drained += 1
        return 0


class ScriptedConn(Connection):
    """Reads scripted as (bytes, the read's stamp), all kernel-stamped; the send at 10.0 s. Its capture holds
    what a tap saw: the SYN inside the connect, the request's segment at ``sent_at`` and the server's
    ``segments`` (bytes, stamp), sequence numbers starting near 2^32 so the response crosses the wrap."""

    CISN, SISN, PORT = WRAP - 3, WRAP - 40, 40000

    def __init__(self, reads, segments, sent_at=10.0, seen=None):
        super().__init__(Target("http", "127.0.0.1", 9, ""), capture=FakeCapture())
        self.reads = list(reads)
        self.sock = object()
        self.local_port = self.PORT
        self.connect_span = (9.0, 9.001)
        table = self.table = self.capture.table
        table.syn(self.PORT, self.CISN, 9.0005)
        table.synack(self.PORT, self.SISN)
        self.sent_at = sent_at
        self.off = 0
        self.segments = [(self.SISN + 1 + sum(len(b) for b, _ in segments[:i]), len(b), t)
                         for i, (b, t) in enumerate(segments)]
        self.seen = len(segments) if seen is None else seen  # how many the capture has read

    def open(self):
        return 0.0

    def send(self, sock, payload):
        table = self.table
        table.data(self.PORT, True, (self.CISN + 1 + self.sent) % WRAP, len(payload), self.sent_at)
        for seq, size, t in self.segments[: self.seen]:
            table.data(self.PORT, False, seq % WRAP, size, t)
        self.sent += len(payload)
        self._next_floor = self.floor = 10.0
        return 10.0

    def recv(self, sock):
        data, t = self.reads.pop(0)
        self.got += len(data)
        if self.keep is not None:
            self.keep.append(data)
        self.floor = self._next_floor
        self.kernel = True
        self._next_floor = max(self.floor, t)
        return data, t


def _late_reader_call(seen=None):
    # the server's segments: head at 10.2, a at 10.3, b at 10.32, c + end at 10.34; the client, late, reads
    # them all at once at 10.5 (the kernel merged them; the read's stamp is the newest segment's, 10.34)
    parts = [(response_head(), 10.2), (ev("a"), 10.3), (ev("b"), 10.32), (ev("c") + DONE, 10.34)]
    conn = ScriptedConn([(b"".join(p for p, _ in parts), 10.34)], parts, seen=seen)
    return StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r"), conn


def test_a_late_reader_gets_each_events_own_segment_stamp_from_the_capture():
    call, conn = _late_reader_call()
    rec = call.run()
    assert rec.status == "ok", rec.error
    assert rec.timing_source == "capture"
    assert rec.ttft_ms == pytest.approx(300.0) and rec.e2e_ms == pytest.approx(340.0)
    assert rec.itl_ms == pytest.approx([20.0, 20.0])
    assert rec.ttft_error_bound_ms == 0.0 and rec.e2e_error_bound_ms == 0.0
    assert conn.keep is None  # nothing kept past the record
    assert conn.capture.table.ports[conn.PORT][-1].rx.floor == conn.got  # its segments may go


def test_without_the_capture_the_same_reads_carry_the_merged_stamp_and_a_bound():
    parts = [(response_head(), 10.2), (ev("a"), 10.3), (ev("b"), 10.32), (ev("c") + DONE, 10.34)]
    conn = ScriptedConn([(b"".join(p for p, _ in parts), 10.34)], parts)
    conn.capture = None
    rec = StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r").run()
    assert rec.timing_source == "read"
    assert rec.ttft_ms == pytest.approx(340.0) and rec.ttft_error_bound_ms == pytest.approx(340.0)


def test_the_send_is_the_captured_segment_of_the_requests_last_byte():
    parts = [(response_head() + ev("a"), 10.3), (ev("b") + DONE, 10.32)]
    conn = ScriptedConn([(parts[0][0], 10.3), (parts[1][0], 10.32)], parts, sent_at=10.01)
    rec = StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r").run()
    assert rec.timing_source == "capture"
    assert rec.ttft_ms == pytest.approx(290.0) and rec.e2e_ms == pytest.approx(310.0)


def test_a_segment_the_capture_missed_leaves_the_read_stamps_and_their_bounds(monkeypatch):
    monkeypatch.setattr(client, "CAPTURE_WAIT_S", 0.01)
    call, _conn = _late_reader_call(seen=3)  # the last segment never came through the capture
    rec = call.run()
    assert rec.status == "ok", rec.error
    assert rec.timing_source == "read"
    assert rec.ttft_ms == pytest.approx(340.0) and rec.ttft_error_bound_ms == pytest.approx(340.0)


def test_a_second_request_on_the_connection_is_matched_at_its_own_offsets():
    first = [(response_head(), 10.2), (ev("a") + DONE, 10.3)]
    second = [(response_head(), 11.2), (ev("b"), 11.4), (ev("c") + DONE, 11.45)]
    conn = ScriptedConn([(first[0][0] + first[1][0], 10.3), (b"".join(p for p, _ in second), 11.45)],
                        first + second)
    dialect = get_dialect("openai-chat")
    rec1 = StreamCall(conn, dialect, HEAD, b"{}", "r1").run()
    conn.sent_at = 11.0
    conn.segments = []  # (all the response's segments went into the table with the first send)
    rec2 = StreamCall(conn, dialect, HEAD, b"{}", "r2").run()
    assert rec1.timing_source == rec2.timing_source == "capture"
    assert rec1.ttft_ms == pytest.approx(300.0)
    assert rec2.ttft_ms == pytest.approx(400.0) and rec2.e2e_ms == pytest.approx(450.0)


def test_a_target_off_loopback_is_refused_in_one_line():
    with pytest.raises(capture.CaptureError, match="loopback targets only"):
        capture.interface_for("192.0.2.1")
    assert capture.interface_for("127.0.0.1") == "lo"


def test_a_segment_split_across_reads_stamps_the_events_it_completes_with_its_own_time():
    # the server's segments: head at 10.2, then a and b together at 10.3, c + end at 10.4; the client reads the
    # second segment in two pieces (the first ends inside a), then the third
    ab = ev("a") + ev("b")
    parts = [(response_head(), 10.2), (ab, 10.3), (ev("c") + DONE, 10.4)]
    conn = ScriptedConn([(parts[0][0] + ab[:10], 10.3), (ab[10:], 10.3), (parts[2][0], 10.4)], parts)
    rec = StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r").run()
    assert rec.timing_source == "capture"
    assert rec.ttft_ms == pytest.approx(300.0) and rec.e2e_ms == pytest.approx(400.0)
    assert rec.itl_ms == pytest.approx([0.0, 100.0])


def _can_capture() -> str:
    try:
        capture.check("127.0.0.1", 0)
    except capture.CaptureError as e:
        return str(e)
    return ""


@pytest.mark.skipif(bool(_can_capture()), reason=_can_capture() or "-")
def test_a_real_capture_on_lo_sees_the_syn_and_every_data_segment_and_no_pure_ack():
    import socket
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    cap = capture.Capture(port)
    try:
        t0 = time.perf_counter()
        cli = socket.create_connection(("127.0.0.1", port))
        t1 = time.perf_counter()
        peer, _ = srv.accept()
        for sock in (cli, peer):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cli.sendall(b"x" * 100)
        sent = []
        for piece in (b"a" * 10, b"b" * 20):
            time.sleep(0.02)
            sent.append(time.perf_counter())
            peer.sendall(piece)
        got = b""
        while len(got) < 30:
            got += cli.recv(100)
        deadline = time.monotonic() + 2.0
        c = None
        while time.monotonic() < deadline:
            cap.drain()
            c = cap.table.connection(cli.getsockname()[1], t0 - 0.005, t1 + 0.005)
            if c is not None and c.rx is not None and c.rx.top >= 30:
                break
            time.sleep(0.01)
        assert c is not None and c.rx is not None
        assert c.tx.top == 100
        first, second = c.rx.delivered([9, 29])
        assert sent[0] - 0.001 <= first < sent[1] <= second + 0.001  # each segment at its own moment
        stats = cap.stats()
        assert stats["segments"] == 3 and stats["kernel_drops"] == 0
        assert stats["kernel_packets"] == 5  # SYN, SYN-ACK and the 3 data segments: the ACKs stayed in the kernel
    finally:
        cap.stop()
        cap.sock.close()
        srv.close()


def test_a_compressed_stream_read_late_is_read_again_through_its_decoder():
    import zlib

    z = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)  # gzip, each event flushed as the server writes it

    def gz(data: bytes) -> bytes:
        return chunk(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))

    def raw_ev(text: str) -> bytes:
        return b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text.encode()

    head = response_head(extra="content-encoding: gzip\r\n")
    end = (b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' + b"data: [DONE]\n\n")
    parts = [(head, 10.2), (gz(raw_ev("a")), 10.3), (gz(raw_ev("b")), 10.35), (gz(raw_ev("c") + end) + b"0\r\n\r\n",
                                                                             10.4)]
    conn = ScriptedConn([(b"".join(p for p, _ in parts), 10.4)], parts)  # all in one late read
    rec = StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r").run()
    assert rec.status == "ok", rec.error
    assert rec.timing_source == "capture"
    assert rec.ttft_ms == pytest.approx(300.0) and rec.e2e_ms == pytest.approx(400.0)
    assert rec.itl_ms == pytest.approx([50.0, 50.0])


def test_a_record_waits_for_a_capture_that_has_not_read_its_last_segment_yet(monkeypatch):
    monkeypatch.setattr(client, "CAPTURE_POLL_S", 0.001)
    call, conn = _late_reader_call(seen=3)  # the ring's last block is not handed over yet ...
    last = conn.segments[3]
    real = conn.capture

    class Late(FakeCapture):
        def drain(self):  # ... until the third time the record asks
            super().drain()
            if self.drained == 3:
                self.table.data(conn.PORT, False, last[0] % WRAP, last[1], last[2])
            return 0

    late = Late()
    late.table = real.table
    conn.capture = late
    rec = call.run()
    assert rec.timing_source == "capture" and late.drained == 3
    assert rec.ttft_ms == pytest.approx(300.0) and rec.e2e_ms == pytest.approx(340.0)


@pytest.mark.skipif(bool(_can_capture()), reason=_can_capture() or "-")
def test_a_late_reader_on_a_real_capture_gets_each_tokens_own_arrival():
    from test_client_bounds import TOL_MS, TimedServer

    from tokenswarm.measure import EPOCH_OFFSET

    # three tokens 40 ms apart; the client reads only after 300 ms, when the kernel has merged them: under
    # --timing read the first token would carry the last one's stamp (test_client_bounds), here its own
    srv = TimedServer([response_head() + ev("a"), ev("b"), ev("c") + DONE], [0.05, 0.04, 0.04])
    cap = capture.Capture(srv.port)
    conn = Connection(Target("http", "127.0.0.1", srv.port, ""), read_timeout=5.0, capture=cap)
    try:
        conn.open()
        late_first_read(conn, 0.3)
        rec = StreamCall(conn, get_dialect("openai-chat"), HEAD, b"{}", "r").run()
    finally:
        conn.close()
        srv.close()
        cap.stop()
        cap.sock.close()
    assert rec.status == "ok", rec.error
    assert rec.timing_source == "capture" and rec.ttft_error_bound_ms == 0.0
    send = rec.start_time - EPOCH_OFFSET
    for k, ms in ((0, rec.ttft_ms), (2, rec.e2e_ms)):
        assert (srv.before[k] - send) * 1000 - TOL_MS <= ms <= (srv.after[k] - send) * 1000 + TOL_MS
    assert rec.itl_ms[0] > 30.0  # the gaps are the server's own, not squeezed into one read
