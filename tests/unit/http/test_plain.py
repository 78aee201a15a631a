"""Plain requests (tokenswarm.http.plain): any HTTP answer is a Reply; no answer is one short FetchError line."""

import gzip
import socket
import time

import pytest

from streamserver import LoopbackServer
from tokenswarm.http.plain import BAD_RESPONSE, TIMEOUT, UNREACHABLE, FetchError, PlainClient


@pytest.fixture
def serve():
    servers = []

    def start(answer):
        s = LoopbackServer(answer)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def reply(body=b"ok", status="200 OK", extra=b""):
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status.encode(), len(body), extra, body)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_any_status_is_an_answer_and_the_connection_is_kept_alive(serve):
    srv = serve(lambda c, h: c.sendall(reply(b'{"error": "no"}', "404 Not Found")))
    with PlainClient(2.0, 2.0, {"Authorization": "Bearer sk-abcdef"}) as client:
        r1 = client.get(srv.url + "/v1/models")
        r2 = client.get(srv.url + "/v1/models")
    assert (r1.status, r1.reason, r1.body) == (404, "Not Found", b'{"error": "no"}') and r2.status == 404
    assert srv.accepted == 1
    assert srv.heads[0].startswith("GET /v1/models HTTP/1.1\r\n")
    assert "Authorization: Bearer sk-abcdef" in srv.heads[0] and "Accept: */*" in srv.heads[0]


def test_gzip_bodies_are_decoded(serve):
    page = b"vllm:num_requests_running 3\n" * 100
    srv = serve(lambda c, h: c.sendall(reply(gzip.compress(page), extra=b"Content-Encoding: gzip\r\n")))
    with PlainClient(2.0, 2.0) as client:
        assert client.get(srv.url + "/metrics").body == page


def test_redirects_are_not_followed(serve):
    other = serve(lambda c, h: c.sendall(reply()))
    srv = serve(lambda c, h: c.sendall(reply(b"", "302 Found", b"Location: %s/elsewhere\r\n" % other.url.encode())))
    with PlainClient(2.0, 2.0, {"Authorization": "Bearer sk-abcdef"}) as client:
        assert client.get(srv.url + "/v1/models").status == 302
    assert other.accepted == 0  # the key went nowhere else


def test_proxy_variables_are_ignored(serve, monkeypatch):
    srv = serve(lambda c, h: c.sendall(reply()))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with PlainClient(2.0, 2.0) as client:
        assert client.get(srv.url + "/metrics").body == b"ok"


def failure(url, read_timeout=2.0, headers=None, **kw):
    with PlainClient(2.0, read_timeout, headers, **kw) as client, pytest.raises(FetchError) as e:
        client.get(url)
    assert isinstance(e.value, OSError)  # callers catching OSError see it
    assert "\n" not in str(e.value)
    return e.value


def test_a_refused_connection_says_so():
    e = failure(f"http://127.0.0.1:{closed_port()}/v1/models")
    assert (e.kind, str(e)) == (UNREACHABLE, "Connection refused")


def test_a_server_that_breaks_http_is_a_bad_response(serve):
    closes = serve(lambda c, h: False)
    e = failure(closes.url + "/m")
    assert (e.kind, str(e)) == (BAD_RESPONSE, "connection closed before the response")
    garbage = serve(lambda c, h: c.sendall(b"garbage\r\n\r\n") or False)
    e = failure(garbage.url + "/m")
    assert e.kind == BAD_RESPONSE and str(e).startswith("bad status line") and "garbage" in str(e)
    bad_chunk = serve(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") or False)
    assert failure(bad_chunk.url + "/m").kind == BAD_RESPONSE
    short = serve(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") or False)
    assert failure(short.url + "/m").kind == BAD_RESPONSE


def test_no_answer_in_time_is_a_timeout_naming_the_limit(serve):
    srv = serve(lambda c, h: time.sleep(3))
    t0 = time.monotonic()
    e = failure(srv.url + "/metrics", read_timeout=0.3)
    assert (e.kind, e.timeout_s, str(e)) == (TIMEOUT, 0.3, "no answer within 0.3s")
    assert time.monotonic() - t0 >= 0.3


def test_an_oversized_answer_is_refused(serve):
    srv = serve(lambda c, h: c.sendall(reply(b"x" * 300_000)))
    e = failure(srv.url + "/metrics", max_body_bytes=100_000)
    assert e.kind == BAD_RESPONSE and "100000 bytes" in str(e)


def test_a_header_that_cannot_be_sent_is_named_without_its_value():
    e = failure(f"http://127.0.0.1:{closed_port()}/", headers={"X-Team-Token": " sk-leading-space-secret"})
    assert "sk-leading-space-secret" not in str(e)
