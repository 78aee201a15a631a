"""The openai-responses dialect: its body, and OpenAI's Responses event shapes (recorded streams, shaped as
the API reference's "Streaming events" gives them) through the real client."""

import pytest

from streamserver import fixture_events, run_stream, sse_response
from tokenswarm.datasets import Prompt
from tokenswarm.dialects import RequestOptions, get_dialect

RESPONSES = get_dialect("openai-responses")
HEAD = b"POST /v1/responses HTTP/1.1\r\nHost: x\r\n"


def run(name, delays=None, events=None):
    return run_stream(sse_response(events or fixture_events(name)), RESPONSES, delays, head=HEAD)[0]


def test_body_caps_with_max_output_tokens_and_takes_messages_as_input():
    opts = RequestOptions(model="m", max_tokens=7, temperature=0.0)
    assert RESPONSES.body(Prompt("p", "Say hi"), opts) == {
        "model": "m", "input": "Say hi", "max_output_tokens": 7, "stream": True, "temperature": 0.0}
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    body = RESPONSES.body(Prompt("p", "x", max_tokens=3, messages=history), opts)
    assert body["input"] == history and body["max_output_tokens"] == 3
    assert "stream_options" not in body  # the Responses API has no such field: usage is always in completed
    renamed = RESPONSES.body(Prompt("p", "x"), RequestOptions(model="m", max_tokens=5, max_tokens_field="max_tokens",
                                                              extra_body={"temperature": None, "store": False}))
    assert renamed == {"model": "m", "input": "x", "max_tokens": 5, "stream": True, "store": False}
    assert RESPONSES.probe_tokens == 16 and RESPONSES.path == "/v1/responses"


def test_text_stream_usage_from_response_completed():
    # created, in_progress, item/part added at once; the first delta 60 ms later
    n = len(fixture_events("responses_text.sse"))
    rec = run("responses_text.sse", delays=[0, 0, 0, 0, 0, 0.06] + [0.01] * (n - 4))
    assert rec.status == "ok", rec.error
    assert rec.request_id == "resp_67c9fdcecf488190bdd9a0409de3a1ec"
    assert rec.ttft_ms >= 60.0 and rec.ttft_ms == rec.ttft_visible_ms
    assert rec.output_events == 4  # output_text.done repeats the text: not output
    assert rec.output_tokens == 11 and rec.token_source == "usage" and rec.input_tokens == 37
    assert rec.cached_tokens == 0 and rec.reasoning_tokens == 0
    assert rec.finish_reason == "completed" and rec.output_kind == "content"
    assert rec.tpot_ms == pytest.approx((rec.e2e_ms - rec.ttft_ms) / 10)


def test_reasoning_and_function_call_events_are_output():
    events = fixture_events("responses_reasoning_tool.sse")
    delays = [0.0, 0.0, 0.0, 0.05] + [0.005] * (len(events) - 3)
    rec = run("responses_reasoning_tool.sse", delays=delays)
    assert rec.status == "ok", rec.error
    assert rec.ttft_ms >= 50.0 and rec.ttft_visible_ms is None  # reasoning first; no visible text at all
    assert rec.output_kind == "reasoning+tool_calls"
    # 3 reasoning deltas, 1 summary delta, the function's name, 3 argument pieces
    assert rec.output_events == 8
    assert rec.output_tokens == 120 and rec.reasoning_tokens == 96 and rec.cached_tokens == 64
    assert rec.input_tokens == 75


def test_incomplete_at_the_cap_is_a_capped_answer_with_its_usage():
    rec = run("responses_incomplete.sse")
    assert rec.status == "ok", rec.error
    assert rec.finish_reason == "max_output_tokens" and rec.output_tokens == 16 and rec.input_tokens == 9


def test_response_failed_is_a_failure_in_its_own_words():
    rec = run("responses_failed.sse")
    assert rec.status == "server_error_event"
    assert rec.error == "response.failed: server_error: The model failed to generate a response."
    assert rec.output_events == 1  # what came before the failure is kept


def test_error_event_keeps_its_code():
    rec = run("responses_error.sse")
    assert rec.status == "server_error_event" and rec.error == "error: ERR_SOMETHING: Something went wrong"


def test_a_stream_cut_before_response_completed_is_a_disconnect():
    events = fixture_events("responses_text.sse")[:-1]
    rec = run("", events=events)
    assert rec.status == "disconnect" and rec.output_events == 4


def test_data_only_events_and_a_done_marker_read_the_same():
    # gateways that drop the `event:` lines and add [DONE]
    events = [e.split(b"\n", 1)[1] for e in fixture_events("responses_text.sse")] + [b"data: [DONE]\n\n"]
    rec = run("", events=events)
    assert rec.status == "ok" and rec.output_tokens == 11 and rec.output_events == 4
