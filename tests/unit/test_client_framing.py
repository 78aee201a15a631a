"""The measured client's connection (tokenswarm.client): keep-alive, stale-connection retry, connect errors,
kernel receive times."""

import socket
import threading

from streamserver import LoopbackServer, late_first_read
from tokenswarm.client import Connection, StreamCall
from tokenswarm.dialects import get_dialect
from tokenswarm.http.target import Target

STREAM = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
          b"%x\r\n%b\r\n0\r\n\r\n")


def _event(text):
    body = ('data: {"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
            % text).encode()
    return STREAM % (len(body), body)


def tiny_server(drop_after_first: bool = False) -> LoopbackServer:
    """A real loopback server answering each request with one short stream; it may close the connection after
    its first answer, as a server closes an idle keep-alive connection."""
    answered = [0]

    def answer(c, _head):
        answered[0] += 1
        c.sendall(_event(f"r{answered[0]}"))
        return not (drop_after_first and answered[0] == 1)

    return LoopbackServer(answer)


def _call(conn):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    return StreamCall(conn, get_dialect("openai-chat"), head, b"{}", "c").run()


def test_keep_alive_reuses_one_connection():
    srv = tiny_server()
    conn = Connection(Target.parse(f"http://127.0.0.1:{srv.port}"), 2.0, 2.0)
    try:
        recs = [_call(conn) for _ in range(5)]
        assert all(r.status == "ok" for r in recs)
        assert srv.accepted == 1
    finally:
        conn.close()
        srv.close()


def test_a_connection_the_server_closed_while_idle_is_retried_once_on_a_fresh_one():
    srv = tiny_server(drop_after_first=True)
    conn = Connection(Target.parse(f"http://127.0.0.1:{srv.port}"), 2.0, 2.0)
    try:
        assert _call(conn).status == "ok"
        import time

        time.sleep(0.05)  # let the close arrive
        rec = _call(conn)
        assert rec.status == "ok", rec.error
        assert srv.accepted == 2
    finally:
        conn.close()
        srv.close()


def test_connection_refused_is_a_connect_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rec = _call(Connection(Target.parse(f"http://127.0.0.1:{port}"), 1.0, 1.0))
    assert rec.status == "connect_error" and "cannot connect" in rec.error


def test_event_times_are_when_bytes_arrived_not_when_a_busy_client_read_them():
    # a real TCP connection on loopback: the server sends the head and the first token 50 ms after the request
    # and the rest right after; the client is busy elsewhere for 300 ms before it reads anything. With the
    # kernel's receive timestamps (Linux) TTFT is the arrival (~50 ms), not the late read (~300 ms).
    import socket as socketmod
    import time

    from streamserver import chunk, fixture_events, response_head

    events = fixture_events("vllm_chat.sse")
    srv = socketmod.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            time.sleep(0.05)
            conn.sendall(response_head() + chunk(events[0]) + chunk(events[1]))
            conn.sendall(b"".join(chunk(e) for e in events[2:]) + b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    c = Connection(Target("http", "127.0.0.1", port, ""), read_timeout=5.0)
    call = StreamCall(c, get_dialect("openai-chat"), b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", b"{}", "r")
    c.open()
    late_first_read(c, 0.3)  # the event loop is serving other streams
    try:
        rec = call.run()
    finally:
        c.close()
        srv.close()
        thread.join(timeout=5)
    assert rec.status == "ok", rec.error
    if c.stamped:
        assert 45.0 <= rec.ttft_ms < 200.0, rec.ttft_ms  # the arrival, though read ~250 ms later
    else:  # no kernel timestamps on this platform: the read's own time
        assert rec.ttft_ms >= 300.0


def test_error_text_is_always_printable():
    from tokenswarm.client import printable

    assert printable("plain text ü") == "plain text ü"
    out = printable("a\x00b\x08c\x7fd\ne")
    assert out.isprintable() and out == "a\\x00b\\x08c\\x7fd e"
