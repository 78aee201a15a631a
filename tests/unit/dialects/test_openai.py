"""Every OpenAI chunk shape of DESIGN.md, through the real client, from recorded streams."""

import pytest

from streamserver import chunk, fixture_events, response_head, run_stream, sse_response
from tokenswarm.dialects import get_dialect

CHAT = get_dialect("openai-chat")
COMPLETIONS = get_dialect("openai-completions")
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"


def run(pieces, dialect=CHAT, delays=None, close=False, read_timeout=5.0):
    return run_stream(pieces, dialect, delays, close, read_timeout, HEAD)


@pytest.mark.parametrize("name,text_tokens,input_tokens", [
    ("vllm_chat.sse", 3, 12),
    ("sglang_chat.sse", 2, 9),
    ("lmdeploy_chat.sse", 2, 20),  # usage on the finish chunk
    ("gateway_usage_delta.sse", 2, 7),  # usage chunk whose choices hold an empty delta
    ("comments_crlf.sse", 2, 3),  # ':' comments, event:/id:/retry: fields, CRLF line ends
])
def test_recorded_chat_streams_are_ok_with_usage_counts(name, text_tokens, input_tokens):
    rec, _ = run(sse_response(fixture_events(name)))
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == text_tokens and rec.token_source == "usage"
    assert rec.input_tokens == input_tokens
    assert rec.output_events == text_tokens
    assert rec.finish_reason == "length"


def test_role_only_first_chunk_is_not_ttft():
    events = fixture_events("vllm_chat.sse")
    # role-only chunk at once, first content 80 ms later
    delays = [0.0, 0.0, 0.08] + [0.0] * (len(events) - 1)
    rec, srv = run(sse_response(events), delays=delays)
    assert rec.status == "ok"
    assert rec.ttft_ms >= 80.0
    assert rec.ttft_ms == rec.ttft_visible_ms


def test_reasoning_content_and_reasoning_fields():
    rec, _ = run(sse_response(fixture_events("reasoning_content.sse")))
    assert rec.status == "ok" and rec.reasoning_tokens == 5 and rec.output_tokens == 7
    assert rec.ttft_visible_ms >= rec.ttft_ms
    rec, _ = run(sse_response(fixture_events("reasoning_field.sse")))
    assert rec.status == "ok" and rec.output_events == 2


def test_reasoning_delays_visible_ttft():
    events = fixture_events("reasoning_content.sse")
    delays = [0.0, 0.0, 0.0, 0.05, 0.05] + [0.0] * 3
    rec, _ = run(sse_response(events), delays=delays)
    assert rec.ttft_visible_ms - rec.ttft_ms >= 90.0


def test_continuous_usage_splits_multi_token_events():
    rec, _ = run(sse_response(fixture_events("continuous_usage.sse")), delays=[0, 0, 0.02, 0.03, 0.02, 0, 0, 0])
    assert rec.status == "ok" and rec.output_tokens == 4
    assert len(rec.itl_ms) == 3  # the 2-token event's gap split in two
    assert rec.itl_ms[0] == pytest.approx(rec.itl_ms[1])


def test_completions_stream():
    rec, _ = run(sse_response(fixture_events("vllm_completions.sse")), dialect=COMPLETIONS)
    assert rec.status == "ok" and rec.output_tokens == 2 and rec.request_id == "cmpl-77"


def test_stream_without_done_is_a_disconnect_not_ok():
    rec, _ = run(sse_response(fixture_events("no_done.sse")))
    assert rec.status == "disconnect"
    assert "[DONE]" in rec.error
    assert rec.ttft_ms is not None  # what was measured is kept


def test_stream_ending_in_order_after_its_finish_reason_is_ok_without_done():
    # transformers serve: role-only first chunk, deltas, finish_reason with usage, then the message ends
    rec, _ = run(sse_response(fixture_events("transformers_serve.sse")))
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 8 and rec.token_source == "usage" and rec.finish_reason == "length"
    assert rec.input_tokens == 18


def test_connection_dropped_mid_stream():
    pieces = sse_response(fixture_events("vllm_chat.sse"), end=False)[:3]
    rec, _ = run(pieces, close=True)
    assert rec.status == "disconnect" and "mid-stream" in rec.error


def test_error_event_mid_stream():
    rec, _ = run(sse_response(fixture_events("error_event.sse")))
    assert rec.status == "server_error_event"
    assert "CUDA out of memory" in rec.error


def test_non_json_line_is_malformed():
    rec, _ = run(sse_response(fixture_events("malformed.sse")))
    assert rec.status == "malformed" and "not JSON" in rec.error


def test_role_only_stream_is_empty():
    rec, _ = run(sse_response(fixture_events("role_only.sse")))
    assert rec.status == "empty" and rec.output_tokens == 0


def test_http_error_keeps_status_and_server_message():
    body = b'{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","code":404}'
    pieces = [response_head(404, "application/json", chunked=False, extra=f"content-length: {len(body)}\r\n"), body]
    rec, _ = run(pieces)
    assert rec.status == "http_error" and rec.http_status == 404
    assert rec.error == "HTTP 404: The model `x` does not exist."


def test_json_instead_of_a_stream_is_malformed():
    body = b'{"choices":[{"message":{"content":"hi"}}]}'
    pieces = [response_head(200, "application/json", chunked=False, extra=f"content-length: {len(body)}\r\n"), body]
    rec, _ = run(pieces)
    assert rec.status == "malformed" and "event stream" in rec.error


def test_read_timeout():
    pieces = sse_response(fixture_events("vllm_chat.sse"))
    rec, _ = run(pieces[:2] + [pieces[2]], delays=[0, 0, 1.0], read_timeout=0.3)
    assert rec.status == "timeout"


def test_events_split_across_reads_and_chunks_at_odd_places():
    body = b"".join(fixture_events("vllm_chat.sse"))
    framed = chunk(body[:7]) + chunk(body[7:300]) + chunk(body[300:]) + b"0\r\n\r\n"
    raw = response_head() + framed
    pieces = [raw[i : i + 13] for i in range(0, len(raw), 13)]  # 13-byte reads everywhere
    rec, _ = run(pieces)
    assert rec.status == "ok" and rec.output_tokens == 3 and rec.output_events == 3
