"""Streams recorded from a real SGLang 0.5.17 server (H100, Llama-3-8B shape with random weights, 2026-12-07;
deploy/gpu/sglang/), one per API it serves, each at max 8 tokens, read through its dialect by the real client."""

import pytest

from streamserver import fixture_events, run_stream, sse_response
from tokenswarm.dialects import get_dialect

HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("fixture,dialect,output_tokens,input_tokens,finish", [
    # chat: a role chunk with "reasoning_content": null, 8 content chunks, a finish chunk, the usage chunk, [DONE]
    ("sglang_0517_real_chat.sse", "openai-chat", 8, 25, "length"),
    # native /generate: cumulative text and output_ids, meta_info.completion_tokens a running count, [DONE]
    ("sglang_0517_real_generate.sse", "sglang-generate", 8, 5, "length"),
    # /v1/responses: no [DONE]; this answer met the end-of-sequence token after 6 (status "completed")
    ("sglang_0517_real_responses.sse", "openai-responses", 6, 25, "completed"),
    # /v1/messages: message_start (input usage), text deltas, message_delta's output_tokens, message_stop
    ("sglang_0517_real_messages.sse", "anthropic-messages", 8, 25, "max_tokens"),
])
def test_each_api_of_a_real_sglang_gives_one_ok_record_with_its_usage(fixture, dialect, output_tokens,
                                                                    input_tokens, finish):
    events = fixture_events(fixture)
    rec, _ = run_stream(sse_response(events), get_dialect(dialect), None, False, 5.0, HEAD)
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == output_tokens and rec.token_source == "usage"
    assert rec.input_tokens == input_tokens
    assert rec.ttft_ms is not None and rec.e2e_ms >= rec.ttft_ms
    assert rec.finish_reason == finish and rec.output_events == output_tokens
