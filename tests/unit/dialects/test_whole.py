"""Whole (not streamed) answers: embeddings, rerank, and stream: false chat, completions, Responses and Messages,
from recorded bodies (shaped as each API reference gives them) through the real client; E2E only."""

import json
import os

import pytest

from streamserver import FIXTURES, ScriptedServer, chunk, response_head
from tokenswarm.client import StreamCall
from tokenswarm.datasets import Prompt
from tokenswarm.dialects import RequestOptions, get_dialect
from tokenswarm.dialects.base import MalformedEvent

WHOLE = os.path.join(os.path.dirname(FIXTURES), "whole")
HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\n"


def body_of(name):
    with open(os.path.join(WHOLE, name), "rb") as fh:
        return fh.read()


def run(dialect, raw, delays=None, ctype="application/json"):
    half = len(raw) // 2  # the answer in two chunks: E2E is when the second arrived
    pieces = [response_head(ctype=ctype), chunk(raw[:half]), chunk(raw[half:]), b"0\r\n\r\n"]
    srv = ScriptedServer(pieces, delays)
    try:
        return StreamCall(srv.connection(), dialect, HEAD, b"{}", "c1", input_tokens=3, whole=True).run()
    finally:
        srv.stop()


def test_pooling_bodies_carry_the_batch():
    batch = Prompt("p", "q", batch=["q", "d1", "d2"])
    opts = RequestOptions(model="m", extra_body={"encoding_format": "base64"})
    assert get_dialect("openai-embeddings").body(batch, opts) == {"model": "m", "input": ["q", "d1", "d2"],
                                                                  "encoding_format": "base64"}
    assert get_dialect("rerank").body(batch, RequestOptions(model="m")) == {
        "model": "m", "query": "q", "documents": ["d1", "d2"], "top_n": 2}
    assert get_dialect("rerank").body(Prompt("p", "q"), RequestOptions(model="m"))["documents"] == ["q"]
    chat = get_dialect("openai-chat").body(Prompt("p", "x"), RequestOptions(model="m", stream=False))
    assert chat["stream"] is False and "stream_options" not in chat


@pytest.mark.parametrize("dialect,fixture,inp,out,finish", [
    ("openai-embeddings", "embeddings.json", 8, 0, "stop"),
    ("rerank", "rerank_jina.json", 56, 0, "stop"),
    ("rerank", "rerank_cohere.json", 421, 0, "stop"),
    ("openai-chat", "chat_completion.json", 1117, 46, "stop"),
    ("openai-responses", "response.json", 328, 52, "completed"),
    ("anthropic-messages", "message.json", 2095, 503, "end_turn"),
])
def test_whole_answers_are_measured_as_e2e_only(dialect, fixture, inp, out, finish):
    rec = run(get_dialect(dialect), body_of(fixture), delays=[0.0, 0.0, 0.04, 0.0])
    assert rec.status == "ok", rec.error
    assert rec.e2e_ms >= 40.0  # the whole answer's arrival, its second half 40 ms after the first
    assert rec.ttft_ms is None and rec.ttft_visible_ms is None and rec.tpot_ms is None and rec.itl_ms == []
    assert rec.input_tokens == inp and rec.output_tokens == out and rec.token_source == "usage"
    assert rec.finish_reason == finish


def test_whole_failures_in_the_servers_words():
    rec = run(get_dialect("openai-embeddings"), b'{"error": {"message": "input too long", "type": "invalid"}}')
    assert rec.status == "server_error_event" and rec.error == "input too long"
    rec = run(get_dialect("openai-embeddings"), b'{"object": "list"}')
    assert rec.status == "malformed" and "no 'data' list" in rec.error
    rec = run(get_dialect("rerank"), b"not json at all")
    assert rec.status == "malformed" and rec.error.startswith("not JSON")
    ev = get_dialect("anthropic-messages").parse_whole(json.loads(body_of("message_error.json")))
    assert ev.error == "overloaded_error: Overloaded"


def test_a_streaming_only_dialect_has_no_whole_answer():
    with pytest.raises(MalformedEvent, match="reads streams only"):
        get_dialect("sglang-generate").parse_whole({"text": "x"})
    assert get_dialect("openai-embeddings").whole(RequestOptions()) is True
    assert get_dialect("openai-chat").whole(RequestOptions()) is False
    assert get_dialect("openai-chat").whole(RequestOptions(stream=False)) is True
