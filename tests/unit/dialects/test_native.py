"""SGLang native, TGI, Triton and template dialects: bodies and recorded streams through the real client."""

import json

import pytest

from streamserver import ScriptedServer, fixture_events, sse_response
from tokenswarm.client import StreamCall
from tokenswarm.datasets import Prompt
from tokenswarm.dialects import DIALECTS, RequestOptions, UnknownDialect, get_dialect
from tokenswarm.dialects.base import StreamText
from tokenswarm.errors import SettingsError

HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\n"
TEMPLATE = '{"prompt": "{prompt}", "sampling": {"max_tokens": {max_tokens}}, "model": "{model}", "stream": true}'


def run(dialect, fixture, **kw):
    srv = ScriptedServer(sse_response(fixture_events(fixture)), **kw)
    try:
        return StreamCall(srv.connection(), dialect, HEAD, b"{}", "client-1", input_tokens=5).run()
    finally:
        srv.stop()


def test_registry_lists_every_dialect_and_rejects_unknown_names():
    assert set(DIALECTS) == {"openai-chat", "openai-completions", "openai-responses", "anthropic-messages",
                             "sglang-generate", "tgi-generate-stream", "triton-generate-stream", "template",
                             "openai-embeddings", "rerank"}
    with pytest.raises(UnknownDialect, match="choose one of: openai-chat"):
        get_dialect("grpc")


def test_bodies():
    p = Prompt("p", 'Say "hi"', max_tokens=None)
    opts = RequestOptions(model="m", max_tokens=7, temperature=0.0, ignore_eos=True)
    assert get_dialect("sglang-generate").body(p, opts) == {
        "text": 'Say "hi"', "sampling_params": {"max_new_tokens": 7, "temperature": 0.0, "ignore_eos": True},
        "stream": True}
    tgi = get_dialect("tgi-generate-stream").body(p, opts)
    assert tgi["inputs"] == 'Say "hi"' and tgi["parameters"]["max_new_tokens"] == 7
    assert "temperature" not in tgi["parameters"]  # TGI rejects 0
    triton = get_dialect("triton-generate-stream").body(Prompt("p", "x", max_tokens=3), opts)
    assert triton["text_input"] == "x" and triton["max_tokens"] == 3 and triton["stream"] is True
    t = get_dialect("template", body_template=TEMPLATE, text_path="outputs.0.text")
    assert t.body(p, opts) == {"prompt": 'Say "hi"', "sampling": {"max_tokens": 7}, "model": "m", "stream": True}


def test_sglang_native_cumulative_text_and_running_counts():
    rec = run(get_dialect("sglang-generate"), "sglang_native.sse", delays=[0, 0, 0.01, 0.02, 0, 0, 0])
    assert rec.status == "ok" and rec.request_id == "3e9a2b1c54d04f6f"
    assert rec.output_tokens == 5 and rec.token_source == "usage" and rec.input_tokens == 7
    assert rec.output_events == 4 and rec.finish_reason == "length"
    assert len(rec.itl_ms) == 4  # the 2-token event's gap split in two


def test_tgi_stream_ends_with_details_and_counts_special_tokens():
    rec = run(get_dialect("tgi-generate-stream"), "tgi.sse")
    assert rec.status == "ok" and rec.output_tokens == 4 and rec.token_source == "usage"
    assert rec.output_events == 4 and rec.finish_reason == "length"
    assert rec.input_tokens == 5  # TGI sends no prompt count: the dataset's


def test_tgi_stream_cut_before_its_final_event_is_a_failure():
    events = fixture_events("tgi.sse")[:2]
    srv = ScriptedServer(sse_response(events))
    try:
        rec = StreamCall(srv.connection(), get_dialect("tgi-generate-stream"), HEAD, b"{}", "c").run()
    finally:
        srv.stop()
    assert rec.status == "disconnect"


@pytest.mark.parametrize("fixture", ["triton_delta.sse", "triton_cumulative.sse"])
def test_triton_delta_or_cumulative_text(fixture):
    rec = run(get_dialect("triton-generate-stream"), fixture)
    assert rec.status == "ok" and rec.output_events == 3 and rec.token_source == "events"
    assert rec.output_tokens == 3


def test_triton_counts_with_a_tokenizer_when_given():
    srv = ScriptedServer(sse_response(fixture_events("triton_cumulative.sse")))
    try:
        rec = StreamCall(srv.connection(), get_dialect("triton-generate-stream"), HEAD, b"{}", "c",
                         count_tokens=lambda s: len(s)).run()
    finally:
        srv.stop()
    assert rec.token_source == "tokenizer" and rec.output_tokens == len(" Paris is the")


def test_triton_error_object_with_http_200():
    rec = run(get_dialect("triton-generate-stream"), "triton_error.sse")
    assert rec.status == "server_error_event" and "request is too long" in rec.error


def test_template_dialect_reads_the_text_path():
    t = get_dialect("template", body_template=TEMPLATE, text_path="outputs.0.text", text_mode="delta")
    rec = run(t, "template_custom.sse")
    assert rec.status == "ok" and rec.output_events == 3


@pytest.mark.parametrize("kw,msg", [
    ({"body_template": ""}, "needs --body-template"),
    ({"body_template": '{"x": 1}'}, "no {prompt} placeholder"),
    ({"body_template": '{"p": "{prompt}", }'}, "not JSON once filled in"),
    ({"body_template": '["{prompt}"]'}, "must be a JSON object"),
    ({"body_template": TEMPLATE, "text_path": ""}, "needs --text-path"),
    ({"body_template": TEMPLATE, "text_path": "a..b"}, "bad --text-path"),
    ({"body_template": TEMPLATE, "text_path": "a", "text_mode": "both"}, "bad --text-mode"),
])
def test_template_bad_configuration(kw, msg):
    with pytest.raises(SettingsError, match=msg.replace("{", r"\{").replace("}", r"\}")):
        get_dialect("template", **{"text_path": "t", **kw})


def test_stream_text_modes():
    t = StreamText("auto")
    assert [t.take(x) for x in ("a", "ab", "abc")] == ["a", "b", "c"]
    t = StreamText("auto")
    assert [t.take(x) for x in ("a", "b", "a")] == ["a", "b", "a"]
    t = StreamText("cumulative")
    assert [t.take(x) for x in ("Hel", "Hello", "Help!")] == ["Hel", "lo", "p!"]  # rewritten text: from the change


def test_template_body_escapes_prompts():
    t = get_dialect("template", body_template='{"inputs": "{prompt}"}', text_path="t")
    tricky = 'a "quoted"\nline\\ and {braces}'
    assert json.loads(json.dumps(t.body(Prompt("p", tricky), RequestOptions())))["inputs"] == tricky
