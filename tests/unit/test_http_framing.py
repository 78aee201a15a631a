"""HTTP/1.1 framing (tokenswarm.http.framing): request heads, response heads, chunked bodies, the reader."""

import random

import pytest

from tokenswarm.http.framing import (
    MAX_HEAD_BYTES,
    BodyDecoder,
    H11ResponseReader,
    Head,
    ProtocolError,
    ResponseReader,
    parse_head,
    request_head,
)
from tokenswarm.http.target import Target

READERS = [ResponseReader, H11ResponseReader]


def test_parse_head_and_keep_alive_rules():
    h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: abc")
    assert h.status == 200 and h.headers["x-request-id"] == "abc" and h.keep_alive
    assert not parse_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive
    assert not parse_head(b"HTTP/1.0 200 OK").keep_alive
    with pytest.raises(ProtocolError):
        parse_head(b"garbage")


def test_chunked_decoder_any_split():
    payload = b"".join(f"data: {i}\n\n".encode() for i in range(50))
    framed = b""
    pos = 0
    rng = random.Random(1)
    while pos < len(payload):
        n = rng.randint(1, 40)
        part = payload[pos : pos + n]
        framed += b"%x;ext=1\r\n%b\r\n" % (len(part), part)
        pos += n
    framed += b"0\r\nTrailer: x\r\n\r\n"
    for _ in range(20):
        dec = BodyDecoder(Head(200, "OK", {"transfer-encoding": "chunked"}, True))
        out = b""
        i = 0
        while i < len(framed):
            step = rng.randint(1, 17)
            out += dec.feed(framed[i : i + step])
            i += step
        assert out == payload and dec.complete


def test_length_and_close_delimited_bodies():
    dec = BodyDecoder(Head(200, "OK", {"content-length": "5"}, True))
    assert dec.feed(b"hel") == b"hel" and not dec.complete
    assert dec.feed(b"lo") == b"lo" and dec.complete
    dec = BodyDecoder(Head(200, "OK", {}, False))
    assert dec.feed(b"abc") == b"abc" and not dec.complete
    dec.eof()
    assert dec.complete


def test_bytes_after_a_complete_message_stay_in_the_buffer():
    # they belong to no response: the connection carrying them must not be reused (callers check dec.buf)
    dec = BodyDecoder(Head(200, "OK", {"transfer-encoding": "chunked"}, True))
    assert dec.feed(b"3\r\nabc\r\n0\r\n\r\n") == b"abc" and dec.complete and dec.buf == b""
    dec = BodyDecoder(Head(200, "OK", {"transfer-encoding": "chunked"}, True))
    assert dec.feed(b"3\r\nabc\r\n0\r\n\r\n0\r\n\r\n") == b"abc" and dec.complete
    assert dec.buf == b"0\r\n\r\n"
    dec = BodyDecoder(Head(200, "OK", {"content-length": "2"}, True))
    assert dec.feed(b"okHTTP") == b"ok" and dec.complete and dec.buf == b"HTTP"


def test_bad_chunk_size_is_a_protocol_error():
    dec = BodyDecoder(Head(200, "OK", {"transfer-encoding": "chunked"}, True))
    with pytest.raises(ProtocolError):
        dec.feed(b"zz\r\nabc\r\n")




def test_request_head_writes_the_line_and_host_and_refuses_line_breaks_without_showing_the_value():
    t = Target.parse("http://127.0.0.1:8000/v1")
    assert request_head(t, "POST", "/chat/completions", {"Accept": "text/event-stream"}) == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: text/event-stream\r\n")
    with pytest.raises(ValueError, match="X-Key") as e:
        request_head(t, "POST", "/x", {"X-Key": "sk-secret\r\nEvil: 1"})
    assert "sk-secret" not in str(e.value)


CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"6\r\ndata: \r\n3\r\nabc\r\n0\r\n\r\n")


@pytest.mark.parametrize("reader", READERS)
def test_reader_head_and_body_at_any_split(reader):
    for cut in range(1, len(CHUNKED)):
        r = reader()
        body = r.feed(CHUNKED[:cut])
        assert (r.head is None) == (CHUNKED.find(b"\r\n\r\n") + 4 > cut)
        body += r.feed(CHUNKED[cut:])
        assert body == b"data: abc" and r.complete and r.reusable
        assert r.head.status == 200 and r.head.headers["content-type"] == "text/event-stream"


@pytest.mark.parametrize("reader", READERS)
def test_reader_reuse_rules(reader):
    r = reader()
    assert r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok") == b"ok"
    assert r.complete and not r.reusable  # the server will close it
    r = reader()
    assert r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1") == b"ok"
    assert r.complete and not r.reusable  # bytes after the message belong to no request
    r = reader()
    assert r.feed(b"HTTP/1.0 200 OK\r\n\r\nabc") == b"abc" and not r.complete
    r.eof()
    assert r.complete and not r.reusable  # close-delimited: ended by the close
    r = reader()
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    r.eof()
    assert not r.complete  # cut short
    r = reader("HEAD")
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert r.complete and r.reusable  # a HEAD answer has no body whatever its length says


@pytest.mark.parametrize("reader", READERS)
def test_reader_protocol_errors(reader):
    with pytest.raises(ProtocolError):
        reader().feed(b"garbage\r\n\r\n")
    with pytest.raises(ProtocolError):
        reader().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    r = reader()
    with pytest.raises(ProtocolError):
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            r.feed(b"HTTP/1.1 200 OK\r\n" if r.head is None and _ == 0 else b"X-Pad: " + b"a" * 990 + b"\r\n")
