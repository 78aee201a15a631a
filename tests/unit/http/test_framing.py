"""HTTP/1.1 framing (tokenswarm.http.framing): request heads, and responses read from arbitrary reads."""

import random

import pytest

from tokenswarm.http.framing import MAX_HEAD_BYTES, ProtocolError, ResponseReader, content_decoder, request_head
from tokenswarm.http.target import Target

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def read(raw, method="POST"):
    r = ResponseReader(method)
    return r, r.feed(raw)


def test_request_head_writes_the_line_and_host_and_refuses_line_breaks_without_showing_the_value():
    t = Target.parse("http://127.0.0.1:8000/v1")
    assert request_head(t, "POST", "/chat/completions", {"Accept": "text/event-stream"}) == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: text/event-stream\r\n")
    with pytest.raises(ValueError, match="X-Key") as e:
        request_head(t, "POST", "/x", {"X-Key": "sk-secret\r\nEvil: 1"})
    assert "sk-secret" not in str(e.value)


def test_head_fields():
    r, body = read(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: abc\r\n"
                   b"Content-Length: 0\r\n\r\n")
    assert r.head.status == 200 and r.head.reason == "OK" and body == b""
    assert r.head.headers["x-request-id"] == "abc" and r.head.headers["content-type"] == "text/event-stream"
    r, _ = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    assert r.head.status == 404 and r.complete  # a 1xx answer is skipped


def test_chunked_body_at_any_split():
    payload = b"".join(f"data: {i}\n\n".encode() for i in range(50))
    framed = CHUNKED_HEAD
    pos = 0
    rng = random.Random(1)
    while pos < len(payload):
        n = rng.randint(1, 40)
        part = payload[pos : pos + n]
        framed += b"%x;ext=1\r\n%b\r\n" % (len(part), part)
        pos += n
    framed += b"0\r\nTrailer: x\r\n\r\n"
    for _ in range(20):
        r = ResponseReader()
        out = b""
        i = 0
        while i < len(framed):
            step = rng.randint(1, 17)
            assert not r.complete
            out += r.feed(framed[i : i + step])
            i += step
        assert out == payload and r.complete and r.reusable


def test_the_head_waits_for_its_blank_line():
    raw = CHUNKED_HEAD + b"6\r\ndata: \r\n3\r\nabc\r\n0\r\n\r\n"
    for cut in range(1, len(raw)):
        r = ResponseReader()
        body = r.feed(raw[:cut])
        assert (r.head is None) == (cut < len(CHUNKED_HEAD))
        body += r.feed(raw[cut:])
        assert body == b"data: abc" and r.complete and r.reusable


def test_length_and_close_delimited_bodies():
    r, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    assert body == b"hel" and not r.complete
    assert r.feed(b"lo") == b"lo" and r.complete and r.reusable
    r, body = read(b"HTTP/1.0 200 OK\r\n\r\nabc")
    assert body == b"abc" and not r.complete
    r.eof()
    assert r.complete and not r.reusable  # ended by the close
    r, _ = read(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", method="HEAD")
    assert r.complete and r.reusable  # a HEAD answer has no body whatever its length says


def test_a_body_cut_short_by_the_close_is_not_complete():
    r, body = read(CHUNKED_HEAD + b"3\r\nab")
    r.eof()
    assert body == b"ab" and not r.complete and not r.reusable
    r, _ = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    r.eof()
    assert not r.complete


def test_reuse_rules():
    r, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    assert body == b"ok" and r.complete and not r.reusable  # the server will close it
    r, _ = read(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert r.complete and not r.reusable  # HTTP/1.0 without keep-alive
    # bytes after the message belong to no response: the connection carrying them must not be reused
    r, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1")
    assert body == b"ok" and r.complete and not r.reusable
    r, body = read(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\r\n0\r\n\r\n")
    assert body == b"abc" and r.complete and not r.reusable
    r, _ = read(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\r\n")
    assert r.complete and r.reusable


@pytest.mark.parametrize("raw", [
    b"garbage\r\n\r\n",
    CHUNKED_HEAD + b"zz\r\nabc\r\n",  # a chunk size that is not hex
    CHUNKED_HEAD + b"3\r\nabcXY",  # a chunk not followed by CRLF
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
])
def test_broken_framing_is_a_protocol_error(raw):
    with pytest.raises(ProtocolError):
        ResponseReader().feed(raw)


def test_a_head_larger_than_the_limit_is_a_protocol_error():
    r = ResponseReader()
    r.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError):
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            r.feed(b"X-Pad: " + b"a" * 990 + b"\r\n")


@pytest.mark.parametrize("coding,wbits", [("gzip", 31), ("x-gzip", 31), ("deflate", 15), ("Deflate", -15)])
def test_content_decoder_decodes_piece_by_piece(coding, wbits):
    import zlib

    events = [b"data: %d\n\n" % i for i in range(5)]
    z = zlib.compressobj(wbits=wbits)
    parts = [z.compress(e) + z.flush(zlib.Z_SYNC_FLUSH) for e in events]
    inflate = content_decoder(coding)
    # every flushed block decodes to exactly its event: events are complete at their own block
    assert [inflate(p) for p in parts] == events


def test_content_decoder_refuses_what_it_cannot_decode_and_names_corrupt_data():
    assert content_decoder("br") is None and content_decoder("gzip, br") is None
    assert content_decoder("identity")(b"x") == b"x"
    with pytest.raises(ProtocolError, match="bad gzip data"):
        content_decoder("gzip")(b"not gzip at all")
