"""The simulated engine's per-API readers (body -> Request, bad body -> 400) and the OpenAI writers' bytes."""

import json

import pytest

from tokenswarm.simengine import apis
from tokenswarm.simengine.apis import APIS, GENERATE, Request, read, route
from tokenswarm.simengine.server import HTTPFailure


def body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/chat/completions", "chat"),
    ("/v1/completions", "completions"),
    ("/v1/responses", "responses"),
    ("/v1/messages", "messages"),
    ("/generate", GENERATE),
    ("/generate_stream", "tgi"),
    ("/v2/models/llama/generate_stream", "triton"),
    ("/v2/models/llama/generate", "triton"),
    ("/v1/models", None),
    ("/health", None),
    ("/v2/models/llama/infer", None),
])
def test_route_names_the_api_of_a_generation_path(path, name):
    assert route(path) == name


def test_chat_reads_every_message_and_prefers_max_completion_tokens():
    api, req = read("chat", body({
        "model": "m", "stream": True, "max_tokens": 9, "max_completion_tokens": 4,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url"}]},
                     "not a message"]}), "/v1/chat/completions", {})
    assert api.name == "chat" and api.writer is apis.ChatWriter and api.openai
    assert req == Request(["be", "brief", "a", "b"], 4, True, "m", include_usage=True)


def test_chat_without_stream_options_or_max_tokens():
    _, req = read("chat", body({"messages": [{"content": "x"}], "stream_options": ["no"]}), "/v1/chat/completions",
                  {})
    assert req == Request(["x"], None, False, None, include_usage=False)


def test_completions_joins_a_prompt_list():
    api, req = read("completions", body({"prompt": ["one", 2, "three four"], "max_tokens": 3}), "/v1/completions",
                    {})
    assert api.name == "completions" and api.openai
    assert req == Request(["one", "2", "three", "four"], 3, False, None)


def test_generate_is_sglang_unless_the_body_has_inputs():
    api, req = read(GENERATE, body({"text": "s g", "stream": True, "sampling_params": {"max_new_tokens": 5},
                                    "model": "x"}), "/generate", {})
    assert api.name == "sglang" and not api.openai
    assert req == Request(["s", "g"], 5, True, "x")
    api, req = read(GENERATE, body({"inputs": "t g i", "parameters": {"max_new_tokens": 2}}), "/generate", {})
    assert api.name == "tgi"
    assert req == Request(["t", "g", "i"], 2, False, None)


def test_tgi_generate_stream_always_streams():
    _, req = read("tgi", body({"inputs": "a", "stream": False}), "/generate_stream", {})
    assert req.stream and req.max_tokens is None
    _, req = read("tgi", body({"inputs": "a", "stream": True, "parameters": None}), "/generate", {})
    assert req.stream and req.max_tokens is None


def test_triton_takes_model_and_streaming_from_the_path():
    api, req = read("triton", body({"text_input": "t r", "max_tokens": 3, "stream": True, "model": "body"}),
                    "/v2/models/trt/generate", {"x-sim-text": "cumulative"})
    assert api.name == "triton"
    assert req == Request(["t", "r"], 3, False, "trt", cumulative=True)
    _, req = read("triton", body({"text_input": "t", "stream": False, "model": "body"}),
                  "/v2/models//generate_stream", {})
    assert req == Request(["t"], None, True, "body", cumulative=False)


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("chat", b"{not json", "request body is not valid JSON"),
    ("chat", b"", "request body is not valid JSON"),
    ("sglang", b"\xff\xfe", "request body is not valid JSON"),
    ("chat", b"[1, 2]", "request body must be a JSON object"),
    (GENERATE, b'"text"', "request body must be a JSON object"),
    ("chat", b'{"messages": []}', "'messages' must be a non-empty list"),
    ("chat", b'{"messages": "hi"}', "'messages' must be a non-empty list"),
    ("chat", b"{}", "'messages' must be a non-empty list"),
    ("completions", b'{"prompt": 5}', "'prompt' must be a string"),
    ("completions", b"{}", "'prompt' must be a string"),
    (GENERATE, b'{"text": null}', "'text' must be a string"),
    (GENERATE, b'{"inputs": {"a": 1}}', "'inputs' must be a string"),
    ("tgi", b'{"text": "an SGLang body on TGI\'s path"}', "'inputs' must be a string"),
    ("triton", b'{"text_input": 3}', "'text_input' must be a string"),
    (GENERATE, b'{"text": "hi", "sampling_params": [1]}', "'sampling_params' must be a JSON object"),
    ("tgi", b'{"inputs": "hi", "parameters": "p"}', "'parameters' must be a JSON object"),
])
def test_a_bad_body_is_a_400_naming_the_field(name, raw, message):
    path = "/v2/models/m/generate" if name == "triton" else "/x"
    with pytest.raises(HTTPFailure) as e:
        read(name, raw, path, {})
    assert e.value.status == 400 and str(e.value) == message
    assert json.loads(e.value.body()) == {"object": "error", "message": message, "type": "BadRequestError",
                                          "param": None, "code": 400}


def test_every_api_in_the_table_is_reachable_by_a_path():
    named = {route(p) for p in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
                                "/v1/embeddings", "/v1/rerank", "/generate_stream", "/v2/models/m/generate")}
    assert named | {"sglang"} == set(APIS)


@pytest.fixture
def created(monkeypatch):
    monkeypatch.setattr(apis.time, "time", lambda: 1700000000.5)


def test_openai_writers_bytes(created):
    req = Request(["a", "b"], 2, True, include_usage=True)
    chat = apis.ChatWriter("r1", "m", req, offset=0)
    head = b'data: {"id":"chatcmpl-r1","object":"chat.completion.chunk","created":1700000000,"model":"m",'
    assert chat.start() == head + (b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                                   b'"logprobs":null,"finish_reason":null}]}\n\n')
    word = apis.TOKEN_JSON[1]
    assert chat.token(1, False) == head + (b'"choices":[{"index":0,"delta":{"content":' + word
                                           + b'},"logprobs":null,"finish_reason":null}]}\n\n')
    assert chat.token(1, True).endswith(b'},"logprobs":null,"finish_reason":"length"}]}\n\n')
    assert chat.end(2) == head + (b'"choices":[],"usage":{"prompt_tokens":2,"total_tokens":4,'
                                  b'"completion_tokens":2}}\n\ndata: [DONE]\n\n')
    full = json.loads(chat.full(2, cached=1))
    assert full["object"] == "chat.completion" and full["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": apis.Writer.text(2, 0)}, "logprobs": None,
         "finish_reason": "length"}]
    assert full["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}

    cmpl = apis.CompletionsWriter("r2", "m", Request(["a"], 1, True), offset=3)
    head = b'data: {"id":"cmpl-r2","object":"text_completion","created":1700000000,"model":"m",'
    assert cmpl.start() == b""
    assert cmpl.token(0, True) == head + (b'"choices":[{"index":0,"text":' + apis.TOKEN_JSON[3]
                                          + b',"logprobs":null,"finish_reason":"length"}]}\n\n')
    assert cmpl.end(1) == b"data: [DONE]\n\n"
    assert list(json.loads(cmpl.full(1))) == ["id", "object", "created", "model", "choices", "usage"]
    assert json.loads(cmpl.full(1))["choices"] == [
        {"index": 0, "text": apis.TOKEN_TEXT[3], "logprobs": None, "finish_reason": "length"}]


def test_responses_and_messages_readers():
    _, req = read("responses", body({"model": "m", "instructions": "be brief", "max_output_tokens": 4, "stream": True,
                                     "input": [{"role": "user", "content": [{"type": "input_text", "text": "a b"}]},
                                               {"role": "assistant", "content": "c"}]}), "/v1/responses", {})
    assert req == Request(["be", "brief", "a", "b", "c"], 4, True, "m")
    _, req = read("responses", body({"input": "x y"}), "/v1/responses", {})
    assert req == Request(["x", "y"], None, False, None)
    _, req = read("messages", body({"model": "c", "system": [{"type": "text", "text": "sys"}], "max_tokens": 3,
                                    "stream": True, "messages": [{"role": "user", "content": "p q"}]}),
                  "/v1/messages", {})
    assert req == Request(["sys", "p", "q"], 3, True, "c")
    with pytest.raises(HTTPFailure, match="'input' is required"):
        read("responses", body({"model": "m"}), "/v1/responses", {})
    with pytest.raises(HTTPFailure, match="'messages' must be a non-empty list"):
        read("messages", body({"messages": []}), "/v1/messages", {})


@pytest.mark.parametrize("writer,dialect,finish", [
    (apis.ResponsesWriter, "openai-responses", "max_output_tokens"),
    (apis.MessagesWriter, "anthropic-messages", "max_tokens"),
])
def test_responses_and_messages_writers_read_back_through_their_dialects(writer, dialect, finish):
    from tokenswarm.dialects import get_dialect
    from tokenswarm.measure import StreamMeasure
    from tokenswarm.sse import SSEDecoder

    w = writer("r9", "m", Request(["a", "b", "c"], 3, True), offset=2)
    w.cached = 2
    raw = w.start() + w.token(0, False) + w.token(1, False) + w.token(2, True) + w.end(3)
    parse = get_dialect(dialect).stream().parse_event
    m = StreamMeasure(0.0)
    for i, sev in enumerate(SSEDecoder().feed(raw)):
        ev = parse(sev)
        if ev is not None:
            m.feed(float(i), ev)
    rec = m.record("c", "ok")
    assert m.done and rec.output_events == 3 and rec.output_tokens == 3 and rec.token_source == "usage"
    assert rec.input_tokens == 3 and rec.cached_tokens == 2 and rec.finish_reason == finish
    assert "".join(m.text) == apis.Writer.text(3, 2)
    full = json.loads(w.full(3))
    assert full["usage"]["output_tokens"] == 3


def test_embeddings_and_rerank_answer_whole_after_one_step():
    _, req = read("embeddings", body({"model": "e", "input": ["a b", "c"]}), "/v1/embeddings", {})
    assert req == Request(["a", "b", "c"], 1, False, "e", inputs=2)
    w = apis.EmbeddingsWriter("r1", "e", req)
    full = json.loads(w.full(1))
    assert [d["index"] for d in full["data"]] == [0, 1] and full["usage"]["prompt_tokens"] == 3
    _, req = read("rerank", body({"query": "q", "documents": ["d one", "d two", "x"]}), "/v1/rerank", {})
    assert req == Request(["q", "d", "one", "d", "two", "x"], 1, False, None, inputs=3)
    full = json.loads(apis.RerankWriter("r2", "r", req).full(1))
    assert len(full["results"]) == 3 and full["usage"]["total_tokens"] == 6
    assert route("/rerank") == route("/v2/rerank") == "rerank"
    with pytest.raises(HTTPFailure, match="'documents' must be a string or a non-empty list of strings"):
        read("rerank", body({"query": "q", "documents": []}), "/v1/rerank", {})
