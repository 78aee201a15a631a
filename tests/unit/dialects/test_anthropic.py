"""The anthropic-messages dialect: body, headers, and Anthropic's Messages event shapes (recorded streams,
shaped as the API reference's "Streaming Messages" gives them) through the real client."""

import pytest

from streamserver import fixture_events, run_stream, sse_response
from tokenswarm.datasets import Prompt
from tokenswarm.dialects import RequestOptions, get_dialect

ANTHROPIC = get_dialect("anthropic-messages")
HEAD = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"


def run(name, delays=None, events=None):
    return run_stream(sse_response(events or fixture_events(name)), ANTHROPIC, delays, head=HEAD)[0]


def test_body_and_headers():
    opts = RequestOptions(model="claude", max_tokens=64, temperature=0.5)
    assert ANTHROPIC.body(Prompt("p", "Hi"), opts) == {
        "model": "claude", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64, "stream": True,
        "temperature": 0.5}
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
               {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    body = ANTHROPIC.body(Prompt("p", "c", max_tokens=9, messages=history), opts)
    assert body["system"] == "Be brief." and [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 9 and "stream_options" not in body
    assert ANTHROPIC.request_headers("sk-ant-1234567") == {"anthropic-version": "2023-06-01",
                                                           "x-api-key": "sk-ant-1234567"}
    assert ANTHROPIC.request_headers("") == {"anthropic-version": "2023-06-01"}


def test_several_tokens_per_delta_count_from_message_delta_usage():
    n = len(fixture_events("anthropic_text.sse"))
    # message_start, block start, ping at once; the first text 50 ms later, then 20 ms apart
    delays = [0, 0, 0, 0, 0.05, 0.02, 0.02, 0.02] + [0.0] * (n - 6)
    rec = run("anthropic_text.sse", delays=delays)
    assert rec.status == "ok", rec.error
    assert rec.request_id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert rec.output_tokens == 15 and rec.token_source == "usage"  # not message_start's placeholder 1
    assert rec.input_tokens == 25 and rec.output_events == 4 and rec.finish_reason == "end_turn"
    assert rec.ttft_ms >= 50.0
    # TPOT from the 15 tokens, not from 4 events
    assert rec.tpot_ms == pytest.approx((rec.e2e_ms - rec.ttft_ms) / 14)
    assert rec.tpot_ms < (rec.e2e_ms - rec.ttft_ms) / 3 / 2


def test_thinking_is_reasoning_and_cached_input_is_counted():
    n = len(fixture_events("anthropic_thinking.sse"))
    delays = [0.0] * 9 + [0.03] + [0.0] * (n - 8)  # the text delta (event 8) 30 ms after the thinking
    rec = run("anthropic_thinking.sse", delays=delays)
    assert rec.status == "ok", rec.error
    assert rec.output_kind == "reasoning+content" and rec.output_events == 4  # signature_delta is not output
    assert rec.ttft_visible_ms - rec.ttft_ms >= 30.0
    assert rec.output_tokens == 86 and rec.input_tokens == 12 + 2048 and rec.cached_tokens == 2048


def test_tool_use_name_and_argument_pieces_are_output():
    rec = run("anthropic_tool_use.sse")
    assert rec.status == "ok", rec.error
    assert rec.output_kind == "content+tool_calls"
    assert rec.output_events == 1 + 1 + 3  # text, the tool's name, three non-empty argument pieces
    assert rec.finish_reason == "tool_use" and rec.output_tokens == 89 and rec.input_tokens == 472


def test_error_event_is_a_failure_in_its_own_words():
    rec = run("anthropic_error.sse")
    assert rec.status == "server_error_event" and rec.error == "overloaded_error: Overloaded"
    assert rec.output_events == 1 and rec.input_tokens == 25


def test_a_stream_cut_before_message_stop_is_a_disconnect_and_never_counts_the_placeholder():
    events = fixture_events("anthropic_text.sse")[:-2]  # no message_delta, no message_stop
    rec = run("", events=events)
    assert rec.status == "disconnect"
    assert rec.output_tokens == 4 and rec.token_source == "events"  # message_start's output_tokens 1 is unread
