"""The event-stream decoder against the WHATWG HTML standard's own examples (9.2.6) and its parsing rules."""

import pytest

from tokenswarm.sse import SSEDecoder, SSEEvent


def decode(raw: bytes, pieces: list[int] | None = None, lenient_end: bool = False) -> list[SSEEvent]:
    """Events of ``raw`` fed in one piece, or cut at the offsets in ``pieces``."""
    d = SSEDecoder()
    cuts = [0, *(pieces or []), len(raw)]
    out: list[SSEEvent] = []
    for a, b in zip(cuts, cuts[1:]):
        out += d.feed(raw[a:b])
    last = d.close()
    if lenient_end and last is not None:
        out.append(last)
    return out


def every_split(raw: bytes) -> list[list[SSEEvent]]:
    """The events of ``raw`` cut at every single offset, and fed one byte at a time."""
    results = [decode(raw, [i]) for i in range(1, len(raw))]
    results.append(decode(raw, list(range(1, len(raw)))))
    return results


# -- the standard's examples -------------------------------------------------------------------
SPEC_STOCKS = b"data: YHOO\ndata: +2\ndata: 10\n\n"
SPEC_FOUR_BLOCKS = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
SPEC_EMPTY_DATA = b"data\n\ndata\ndata\n\ndata:\n"
SPEC_SPACE = b"data:test\n\ndata: test\n\n"


def test_spec_multiline_data_joins_lines_with_lf():
    assert decode(SPEC_STOCKS) == [SSEEvent("message", "YHOO\n+2\n10")]


def test_spec_four_blocks_comment_id_and_an_unterminated_last_event():
    events = decode(SPEC_FOUR_BLOCKS)
    assert events == [SSEEvent("message", "first event", "1"), SSEEvent("message", "second event", "")]
    # the standard discards the last block (no blank line after it); close() hands it over on request
    tail = decode(SPEC_FOUR_BLOCKS, lenient_end=True)[-1]
    assert tail == SSEEvent("message", " third event", "")  # only one leading space is removed


def test_spec_data_without_colon_and_empty_data():
    assert decode(SPEC_EMPTY_DATA) == [SSEEvent("message", ""), SSEEvent("message", "\n")]


def test_spec_one_space_after_the_colon_is_optional():
    assert decode(SPEC_SPACE) == [SSEEvent("message", "test"), SSEEvent("message", "test")]


def test_spec_event_types():
    raw = b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    assert [(e.event, e.data) for e in decode(raw)] == [("add", "73857293"), ("remove", "2153"), ("add", "113411")]


# -- line ends, BOM, bytes --------------------------------------------------------------------
@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_end_and_every_cut_gives_the_same_events(eol):
    raw = (b": keep-alive" + eol + b"event: delta" + eol + b"data: {\"a\":" + eol + b"data: 1}" + eol + eol
           + b"retry: 3000" + eol + b"data: [DONE]" + eol + eol)
    want = [SSEEvent("delta", '{"a":\n1}'), SSEEvent("message", "[DONE]")]
    assert decode(raw) == want
    for got in every_split(raw):
        assert got == want


def test_mixed_line_ends_dispatch_at_the_blank_line():
    # an LF-ended line, then a CRLF blank line, then CR-only lines
    raw = b"data: a\n\r\ndata: b\r\rdata: c\r\n\n"
    assert [e.data for e in decode(raw)] == ["a", "b", "c"]
    for got in every_split(raw):
        assert [e.data for e in got] == ["a", "b", "c"]


def test_a_byte_order_mark_at_the_start_is_dropped_once():
    raw = b"\xef\xbb\xbfdata: x\n\n"
    assert decode(raw) == [SSEEvent("message", "x")]
    for got in every_split(raw):
        assert got == [SSEEvent("message", "x")]
    # a second BOM is data, not a mark
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []


def test_invalid_utf8_becomes_replacement_characters():
    raw = b'data: {"t": "caf\xe9 \xf0\x9f"}\n\n'
    (ev,) = decode(raw)
    assert ev.data == '{"t": "caf\ufffd \ufffd"}'


def test_a_multibyte_character_split_across_pieces_survives():
    raw = "data: é漢\n\n".encode()
    for got in every_split(raw):
        assert got == [SSEEvent("message", "é漢")]


def test_fields_id_retry_and_unknown():
    d = SSEDecoder()
    events = d.feed(b"id: 7\nretry: 1500\nfoo: bar\ndata: x\n\nid: a\x00b\nretry: 2s\ndata: y\n\n")
    assert events == [SSEEvent("message", "x", "7"), SSEEvent("message", "y", "7")]  # NUL id ignored
    assert d.retry_ms == 1500  # "2s" is not all digits: ignored


def test_a_blank_line_without_data_resets_the_event_type():
    assert decode(b"event: error\n\ndata: x\n\n") == [SSEEvent("message", "x")]
