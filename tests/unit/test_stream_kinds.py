"""What real servers and gateways send, through the real client, from recorded streams.

Every kind of generated output counts (tool calls, the legacy function_call, refusals, native tokens);
every way a server says "failed" is a failure with the server's own words; SSE framing as the WHATWG
standard has it (several data lines per event, bare CR line ends, a BOM, invalid UTF-8).
"""

import pytest

from streamserver import chunk, fixture_events, response_head, run_stream, sse_response
from tokenswarm.client import retry_after_s
from tokenswarm.dialects import get_dialect

CHAT = get_dialect("openai-chat")


def run(name_or_pieces, dialect=CHAT, delays=None, **kw):
    pieces = sse_response(fixture_events(name_or_pieces)) if isinstance(name_or_pieces, str) else name_or_pieces
    return run_stream(pieces, dialect, delays, **kw)[0]


def body_response(status: int, ctype: str, body: bytes, extra: str = "") -> list[bytes]:
    return [response_head(status, ctype, chunked=False, extra=f"content-length: {len(body)}\r\n{extra}"), body]


# -- 1. every kind of output -----------------------------------------------------------------
def test_tool_call_answer_is_ok_with_ttft_at_the_first_tool_call_delta():
    # a tool-call answer: only delta.tool_calls pieces, finish_reason tool_calls, usage 12 (field case 03)
    events = fixture_events("tool_calls.sse")
    delays = [0.0, 0.0, 0.25] + [0.02] * 5 + [0.0] * (len(events) - 6)
    rec = run("tool_calls.sse", delays=delays)
    assert rec.status == "ok", rec.error
    assert 240 <= rec.ttft_ms <= 320
    assert rec.ttft_visible_ms is None  # no visible content at all
    assert rec.output_tokens == 12 and rec.token_source == "usage"
    assert rec.output_kind == "tool_calls" and rec.finish_reason == "tool_calls"
    assert rec.output_events == 6 and len(rec.itl_ms) == 5
    assert rec.tpot_ms == pytest.approx((rec.e2e_ms - rec.ttft_ms) / 11)


def test_tool_calls_with_continuous_usage_split_their_gaps_by_tokens():
    rec = run("tool_calls_continuous_usage.sse")
    assert rec.status == "ok" and rec.output_tokens == 12 and rec.output_kind == "tool_calls"
    # the first tool-call delta carries 7 tokens (usage 0 -> 7), each later one 1: 5 gaps, none split
    assert rec.output_events == 6 and len(rec.itl_ms) == 5


def test_legacy_function_call_and_refusal_are_output():
    rec = run("function_call.sse")
    assert rec.status == "ok" and rec.output_kind == "function_call" and rec.output_events == 3
    assert rec.output_tokens == 6
    rec = run("refusal.sse")
    assert rec.status == "ok" and rec.output_kind == "refusal" and rec.output_events == 2


def test_kinds_are_listed_in_order_of_appearance():
    rec = run("reasoning_content.sse")
    assert rec.output_kind == "reasoning+content"
    rec = run("vllm_chat.sse")
    assert rec.output_kind == "content"


def test_tool_call_text_is_what_a_local_tokenizer_counts():
    from streamserver import ScriptedServer
    from tokenswarm.client import StreamCall

    seen = []

    def count(text):
        seen.append(text)
        return len(text)

    srv = ScriptedServer(sse_response(fixture_events("tool_calls.sse")))
    try:
        call = StreamCall(srv.connection(5.0), CHAT, b"POST / HTTP/1.1\r\nHost: x\r\n", b"{}", "c", count_tokens=count)
        rec = call.run()
    finally:
        srv.stop()
    assert seen == ['get_weather{"city": "Paris"}']
    assert rec.output_tokens_tokenizer == len(seen[0]) and rec.output_tokens == 12  # usage first


def test_tgi_special_tokens_count_as_output_of_kind_tokens():
    events = fixture_events("tgi.sse")
    rec = run_stream(sse_response(events), get_dialect("tgi-generate-stream"))[0]
    assert rec.status == "ok" and rec.output_events == 4 and rec.output_tokens == 4
    assert rec.output_kind == "content+tokens"  # the third event is a special token: no text, one token


# -- 2. every way a server says "failed" -----------------------------------------------------
def test_200_json_error_body_keeps_the_gateways_own_message():
    body = (b'{"error": {"message": "litellm.ContextWindowExceededError: prompt is too long: 210345 tokens > '
            b'200000 maximum", "type": null, "param": null, "code": "400"}}')
    rec = run(body_response(200, "application/json", body))
    assert rec.status == "server_error_event" and rec.http_status == 200
    assert "ContextWindowExceeded" in rec.error and "stream=true" not in rec.error


@pytest.mark.parametrize("status", [400, 500, 502])
def test_json_error_body_on_any_status_is_kept(status):
    body = b'{"object":"error","message":"too many tokens","type":"BadRequestError","code":400}'
    rec = run(body_response(status, "application/json", body))
    assert rec.status == "http_error" and rec.http_status == status
    assert rec.error == f"HTTP {status}: too many tokens"


def test_a_whole_answer_instead_of_a_stream_is_malformed_with_the_guess():
    body = b'{"id":"c","choices":[{"message":{"content":"hi"}}]}'
    rec = run(body_response(200, "application/json", body))
    assert rec.status == "malformed" and "ignore stream=true" in rec.error


def test_html_error_page_says_its_status_and_title():
    body = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
            b"</center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n")
    rec = run(body_response(502, "text/html", body))
    assert rec.status == "http_error" and rec.error.startswith("HTTP 502: 502 Bad Gateway")
    assert "<" not in rec.error


def test_html_page_with_200_is_malformed_not_empty():
    rec = run([response_head(200, "text/html")] + [chunk(b"<html><body>Login</body></html>"), b"0\r\n\r\n"])
    assert rec.status == "malformed" and "Login" in rec.error


def test_empty_200_event_stream_is_empty_not_a_disconnect():
    rec = run([response_head(), b"0\r\n\r\n"])
    assert rec.status == "empty" and "no events" in rec.error


def test_event_type_error_is_a_server_error_with_its_message():
    rec = run("error_event_type.sse")
    assert rec.status == "server_error_event"
    assert rec.error == "upstream connect error or disconnect/reset before headers"
    assert rec.ttft_ms is not None  # what was measured before it is kept


def test_object_error_chunk_is_a_server_error():
    rec = run("object_error.sse")
    assert rec.status == "server_error_event" and "maximum model length" in rec.error


@pytest.mark.parametrize("name,dialect,words", [
    ("finish_abort.sse", "openai-chat", "finish_reason 'abort'"),
    ("sglang_native_abort.sse", "sglang-generate", "KV cache exhausted"),
])
def test_finish_reason_meaning_the_engine_gave_up_is_a_failure(name, dialect, words):
    rec = run_stream(sse_response(fixture_events(name)), get_dialect(dialect))[0]
    assert rec.status == "server_error_event" and words in rec.error
    assert rec.finish_reason == "abort"


def test_429_keeps_retry_after_and_the_rate_limit_message():
    body = (b'{"error": {"message": "Rate limit reached for requests. Please try again in 2s.", '
            b'"code": "rate_limit_exceeded"}}')
    rec = run(body_response(429, "application/json", body, "retry-after: 2\r\n"))
    assert rec.status == "http_error" and rec.http_status == 429
    assert "Rate limit reached" in rec.error and rec.retry_after_s == 2.0


def test_retry_after_forms():
    assert retry_after_s("7") == 7.0
    assert retry_after_s("") is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


# -- 3. SSE framing per the standard ---------------------------------------------------------
@pytest.mark.parametrize("name", ["multiline_data.sse", "bare_cr.sse"])
def test_valid_sse_framings_are_ok(name):
    # one JSON event over several data: lines; lines ended by a bare CR (field case 11)
    rec = run(name)
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 4 and rec.output_events == 4 and rec.finish_reason == "stop"


def test_bare_cr_stream_cut_between_every_byte():
    body = b"".join(fixture_events("bare_cr.sse"))
    raw = response_head() + chunk(body) + b"0\r\n\r\n"
    rec = run([raw[i:i + 7] for i in range(0, len(raw), 7)])
    assert rec.status == "ok" and rec.output_tokens == 4


def test_invalid_utf8_and_a_bom_do_not_fail_the_request():
    rec = run("invalid_utf8_bom.sse")
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 4 and rec.output_events == 4


def test_event_time_is_when_its_blank_line_arrives():
    # the data line first, the blank line that dispatches it 60 ms later (an event is complete only then)
    events = fixture_events("vllm_chat.sse")
    first_content = events[1]
    pieces = [response_head(), chunk(events[0]), chunk(first_content[:-1]), chunk(b"\n")]
    pieces += [chunk(e) for e in events[2:]] + [b"0\r\n\r\n"]
    rec, srv = run_stream(pieces, CHAT, [0.0, 0.0, 0.0, 0.06] + [0.0] * (len(pieces) - 4))
    assert rec.status == "ok" and rec.ttft_ms >= 60.0


# -- 5. streams that contradict themselves, streams that linger, compressed streams ----------------------
def test_reasoning_left_out_of_completion_tokens_is_counted_back_in():
    # a gateway before a thinking model: completion 6, reasoning 190, total 216, prompt 20 (field case 14 A)
    rec = run("gateway_reasoning_outside_completion.sse", await_usage=True)
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 196 and rec.token_source == "usage" and rec.reasoning_tokens == 190
    assert rec.token_check == "reasoning_outside_completion"
    assert rec.output_events == 6


def test_a_stream_a_gateway_ended_itself_with_zero_usage_is_truncated_and_counted_locally():
    # upstream died after 3 tokens: empty delta, no finish_reason, usage all 0, then [DONE] (field case 14 B)
    rec = run("gateway_upstream_died.sse", await_usage=True)
    assert rec.status == "truncated"
    assert "without a finish reason" in rec.error
    assert rec.output_tokens == 3 and rec.token_source == "events"  # the made-up 0 is not used
    assert rec.input_tokens == 11  # nor its prompt_tokens 0: the dataset's count stays
    assert rec.token_check == "zero_usage_after_output+no_finish"


def test_a_complete_answer_frees_its_user_though_heartbeats_keep_the_stream_open():
    # finish + usage, no [DONE]; the gateway sends a heartbeat comment every 0.4 s and never ends (case 15 A)
    beats = [chunk(b": heartbeat\n\n")] * 4
    pieces = sse_response(fixture_events("gateway_no_done.sse"), end=False) + beats
    delays = [0.0] * (len(pieces) - len(beats)) + [0.4] * len(beats)
    rec, srv = run_stream(pieces, CHAT, delays, await_usage=True)
    assert rec.status == "ok", rec.error
    assert rec.lingered and rec.output_tokens == 5
    # closed well before the heartbeats would have ended (1.6 s), within the grace after the answer
    assert rec.close_ms - rec.e2e_ms < 0.5 * sum(delays) * 1000


def test_silence_after_a_complete_answer_is_not_a_timeout():
    pieces = sse_response(fixture_events("gateway_no_done.sse"), end=False)  # then nothing, connection open
    rec, _ = run_stream(pieces, CHAT, read_timeout=3.0, await_usage=True)
    assert rec.status == "ok" and rec.lingered
    assert rec.close_ms < 0.5 * 3000  # not the read timeout


def test_without_usage_asked_the_finish_reason_completes_the_answer():
    events = fixture_events("gateway_no_done.sse")[:-1]  # no usage event
    rec, _ = run_stream(sse_response(events, end=False), CHAT, read_timeout=3.0)
    assert rec.status == "ok" and rec.lingered and rec.output_tokens == 5 and rec.token_source == "events"


def test_a_stream_ending_in_order_keeps_its_connection_and_does_not_linger():
    rec, srv = run_stream(sse_response(fixture_events("vllm_chat.sse")), CHAT, await_usage=True)
    assert rec.status == "ok" and not rec.lingered


def _compressed(events, wbits):
    import zlib

    z = zlib.compressobj(wbits=wbits)
    return [z.compress(e) + z.flush(zlib.Z_SYNC_FLUSH) for e in events] + [z.flush()]


@pytest.mark.parametrize("coding,wbits", [("gzip", 31), ("deflate", 15), ("deflate", -15)])
def test_a_compressed_stream_is_decoded_as_it_arrives_and_timed_at_its_events(coding, wbits):
    # the gateway compresses anyway, flushing after every event (field case 16); deflate zlib-wrapped or raw
    events = fixture_events("gateway_no_done.sse") + [b"data: [DONE]\n\n"]
    parts = _compressed(events, wbits)
    pieces = [response_head(extra=f"content-encoding: {coding}\r\n")] + [chunk(p) for p in parts] + [b"0\r\n\r\n"]
    delays = [0.0, 0.0, 0.1] + [0.05] * 5 + [0.0] * (len(pieces) - 8)
    rec, _ = run_stream(pieces, CHAT, delays, await_usage=True)
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 5 and rec.output_events == 5
    # each event timed when its own compressed block arrived: four gaps of about 50 ms, none near 0
    assert len(rec.itl_ms) == 4 and min(rec.itl_ms) > 0.5 * 50


def test_a_coding_that_cannot_be_decoded_is_named_and_no_raw_bytes_are_stored():
    pieces = [response_head(extra="content-encoding: br\r\n"), chunk(b"\x1b\x00\x08\xff\x9c"), b"0\r\n\r\n"]
    rec = run(pieces)
    assert rec.status == "malformed" and "Content-Encoding br" in rec.error and rec.error.isprintable()


def test_a_binary_body_is_described_not_copied():
    import zlib

    blob = zlib.compress(b"data: x\n\n" * 20)  # compressed, but the server did not say so
    rec = run([response_head(), chunk(blob), b"0\r\n\r\n"])
    assert rec.status == "malformed" and rec.error.isprintable()
    assert "not text" in rec.error and "\x00" not in rec.error


def test_a_whole_answer_in_one_event_has_no_tpot_nor_itl():
    # "fake streaming": 60 tokens (usage) in a single event (field case 18)
    rec = run("fake_stream_one_event.sse", await_usage=True)
    assert rec.status == "ok" and rec.output_tokens == 60 and rec.output_events == 1
    assert rec.tpot_ms is None and rec.itl_ms == []
    assert rec.ttft_ms == rec.e2e_ms
