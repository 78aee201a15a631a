"""The simulated engine's APIs: how each reads a request body and writes its response, byte for byte.

Five APIs, one entry each in :data:`APIS`: ``chat`` and ``completions``
(OpenAI ``/v1/chat/completions`` and ``/v1/completions``), ``sglang``
(SGLang ``/generate``), ``tgi`` (TGI ``/generate`` and ``/generate_stream``)
and ``triton`` (Triton ``/v2/models/<model>/generate[_stream]``).
:func:`route` tells which API a path belongs to; :func:`read` decodes a body
into a :class:`Request` with that API's reader (raising
:class:`~tokenswarm.simengine.server.HTTPFailure` 400 on a bad one); the
engine then makes the API's :class:`Writer` for the response.

A writer is made per request and produces ready-to-send SSE event payloads
(``data: ...\\n\\n``): what goes out at arrival, one event per token, and the
closing events. Per-token work is one bytes concatenation: everything but the
token text is prebuilt. The shapes follow what vLLM's OpenAI server sends
(DESIGN.md, "Wire formats").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenswarm.simengine.server import HTTPFailure
from tokenswarm.textgen import VOCAB

#: each vocabulary word as the JSON string of one output token (" word")
TOKEN_JSON: tuple[bytes, ...] = tuple(json.dumps(" " + w).encode() for w in VOCAB)
TOKEN_TEXT: tuple[str, ...] = tuple(" " + w for w in VOCAB)


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Request:
    """One generation request as its API's reader found it (fields as sent; the engine checks the values)."""

    words: list[str]  # the prompt's whitespace-separated words: its token count and prefix-cache key
    max_tokens: Any  # output tokens asked for, as sent (None: not given)
    stream: bool
    model: Any = None  # the model named (None or "": the engine's own)
    include_usage: bool = False  # OpenAI ``stream_options.include_usage``: a usage event before [DONE]
    cumulative: bool = False  # Triton: each event carries the whole text so far (header ``x-sim-text: cumulative``)


class Writer:
    """Formats one request's response. Subclasses fill in the API's shapes."""

    content_type = "text/event-stream"
    id_prefix = ""

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        self.id = self.id_prefix + request_id
        self.model = model
        self.prompt_tokens = len(request.words)
        self.include_usage = request.include_usage
        self.offset = offset  # where in the vocabulary this response's text starts
        self.created = int(time.time())
        self.cached = 0  # prompt tokens served from the prefix cache
        self.report_cached = False  # say cached_tokens even when 0 (the engine has a prefix cache)

    def start(self) -> bytes:
        """Events sent as soon as the request arrives (may be empty)."""
        return b""

    def token(self, i: int, last: bool) -> bytes:
        raise NotImplementedError

    def end(self, n: int, cached: int = 0) -> bytes:
        """Events after the last token (usage, end marker)."""
        raise NotImplementedError

    def full(self, n: int, cached: int = 0) -> bytes:
        """The whole non-streamed JSON response."""
        raise NotImplementedError

    def usage(self, n: int, cached: int = 0) -> dict[str, Any]:
        cached = cached or self.cached
        u: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + n,
            "completion_tokens": n,
        }
        if cached or self.report_cached:
            u["prompt_tokens_details"] = {"cached_tokens": cached}
        return u

    @staticmethod
    def text(n: int, offset: int) -> str:
        return "".join(TOKEN_TEXT[(offset + i) % len(TOKEN_TEXT)] for i in range(n))


# -- reading helpers ------------------------------------------------------------------------------

def _object(body: dict[str, Any], field: str) -> dict[str, Any]:
    """``body[field]`` as a JSON object ({} when absent); 400 naming the field when it is something else."""
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HTTPFailure(400, f"'{field}' must be a JSON object")
    return value


def _first(obj: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = obj.get(k)
        if v is not None:
            return v
    return None


def _words(text: Any, field: str) -> list[str]:
    """The prompt's tokens as the engine counts them: its whitespace-separated words."""
    if isinstance(text, list):
        text = " ".join(str(p) for p in text)
    if not isinstance(text, str):
        raise HTTPFailure(400, f"'{field}' must be a string")
    return text.split()


def _content_words(content: Any) -> list[str]:
    if isinstance(content, str):
        return content.split()
    if isinstance(content, list):  # OpenAI content parts
        return [w for p in content if isinstance(p, dict) for w in str(p.get("text", "")).split()]
    return []


def _stream(body: dict[str, Any]) -> bool:
    return bool(body.get("stream", False))


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options") or {}
    return bool(opts.get("include_usage")) if isinstance(opts, dict) else False


# -- OpenAI: /v1/chat/completions and /v1/completions ---------------------------------------------

class OpenAIWriter(Writer):
    """What the two OpenAI APIs share: one chunk per token with ``finish_reason`` on the last, a
    ``choices: []`` usage chunk when asked for, ``[DONE]``. Subclasses name their objects and choices."""

    chunk_object = ""  # "object" of a streamed chunk
    full_object = ""  # "object" of the non-streamed response
    token_open = ""  # a token chunk's choice, up to the token's JSON string
    token_close = ""  # ... and after it, up to "logprobs"

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self._head = json.dumps(
            {"id": self.id, "object": self.chunk_object, "created": self.created, "model": model},
            separators=(",", ":"),
        )[:-1]
        self._pre = ("data: " + self._head + ',"choices":[{"index":0,' + self.token_open).encode()
        self._post = (self.token_close + ',"logprobs":null,"finish_reason":null}]}\n\n').encode()
        self._post_last = (self.token_close + ',"logprobs":null,"finish_reason":"length"}]}\n\n').encode()

    def token(self, i: int, last: bool) -> bytes:
        word = TOKEN_JSON[(self.offset + i) % len(TOKEN_JSON)]
        return self._pre + word + (self._post_last if last else self._post)

    def end(self, n: int, cached: int = 0) -> bytes:
        out = b""
        if self.include_usage:
            out = sse(
                {
                    "id": self.id,
                    "object": self.chunk_object,
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": self.usage(n, cached),
                }
            )
        return out + DONE

    def full(self, n: int, cached: int = 0) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "object": self.full_object,
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, **self.choice(self.text(n, self.offset)), "logprobs": None, "finish_reason": "length"}
                ],
                "usage": self.usage(n, cached),
            }
        ).encode()

    def choice(self, text: str) -> dict[str, Any]:
        """The non-streamed choice's content field."""
        raise NotImplementedError


def read_chat(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """``/v1/chat/completions``: the words of every message's content (a string or text parts);
    ``max_completion_tokens``, else ``max_tokens``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPFailure(400, "'messages' must be a non-empty list")
    words = [w for m in messages if isinstance(m, dict) for w in _content_words(m.get("content"))]
    return Request(words, _first(body, "max_completion_tokens", "max_tokens"), _stream(body), body.get("model"),
                   _include_usage(body))


class ChatWriter(OpenAIWriter):
    """``/v1/chat/completions`` chunks: role-only first chunk, one content chunk per token,
    finish_reason on the last, a ``choices: []`` usage chunk, ``[DONE]``."""

    id_prefix = "chatcmpl-"
    chunk_object = "chat.completion.chunk"
    full_object = "chat.completion"
    token_open = '"delta":{"content":'
    token_close = "}"

    def start(self) -> bytes:
        return (
            "data: " + self._head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            '"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()

    def choice(self, text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}}


def read_completions(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """``/v1/completions``: the words of ``prompt`` (a string, or a list joined with spaces); ``max_tokens``."""
    return Request(_words(body.get("prompt"), "prompt"), _first(body, "max_tokens"), _stream(body),
                   body.get("model"), _include_usage(body))


class CompletionsWriter(OpenAIWriter):
    """``/v1/completions`` chunks: ``choices[0].text`` per token, usage chunk, ``[DONE]``."""

    id_prefix = "cmpl-"
    chunk_object = "text_completion"
    full_object = "text_completion"
    token_open = '"text":'

    def choice(self, text: str) -> dict[str, Any]:
        return {"text": text}


# -- SGLang: /generate ------------------------------------------------------------------------------

def read_sglang(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """SGLang ``/generate``: the words of ``text``; ``sampling_params.max_new_tokens``."""
    words = _words(body.get("text"), "text")
    return Request(words, _first(_object(body, "sampling_params"), "max_new_tokens"), _stream(body),
                   body.get("model"))


class SGLangWriter(Writer):
    """SGLang ``/generate``: ``{"text": <cumulative>, "meta_info": {...}}`` per token, then ``[DONE]``."""

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self.parts: list[str] = []

    def _obj(self, n: int, finish: Any, cached: int = 0) -> dict[str, Any]:
        return {"text": "".join(self.parts), "meta_info": {
            "id": self.id, "finish_reason": finish, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": n, "cached_tokens": cached or self.cached, "e2e_latency": 0.0}}

    def token(self, i: int, last: bool) -> bytes:
        self.parts.append(TOKEN_TEXT[(self.offset + i) % len(TOKEN_TEXT)])
        finish = {"type": "length", "length": i + 1} if last else None
        return sse(self._obj(i + 1, finish))

    def end(self, n: int, cached: int = 0) -> bytes:
        return DONE

    def full(self, n: int, cached: int = 0) -> bytes:
        self.parts = [self.text(n, self.offset)]
        return json.dumps(self._obj(n, {"type": "length", "length": n}, cached)).encode()


# -- TGI: /generate (a body with "inputs") and /generate_stream -------------------------------------

def read_tgi(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """TGI: the words of ``inputs``; ``parameters.max_new_tokens``; ``/generate_stream`` always streams."""
    words = _words(body.get("inputs"), "inputs")
    return Request(words, _first(_object(body, "parameters"), "max_new_tokens"),
                   path == "/generate_stream" or _stream(body), body.get("model"))


class TGIWriter(Writer):
    """TGI ``/generate_stream``: one ``{"index", "token", "generated_text": null, "details": null}`` per token;
    the last carries ``generated_text`` and ``details``; no ``[DONE]``."""

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self.parts: list[str] = []

    def token(self, i: int, last: bool) -> bytes:
        k = (self.offset + i) % len(TOKEN_TEXT)
        text = TOKEN_TEXT[k]
        self.parts.append(text)
        obj: dict[str, Any] = {"index": i + 1, "token": {"id": 1000 + k, "text": text, "logprob": -0.25,
                                                        "special": False},
                               "generated_text": None, "details": None}
        if last:
            obj["generated_text"] = "".join(self.parts)
            obj["details"] = {"finish_reason": "length", "generated_tokens": i + 1, "seed": None}
        return b"data:" + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def end(self, n: int, cached: int = 0) -> bytes:
        return b""

    def full(self, n: int, cached: int = 0) -> bytes:
        return json.dumps({"generated_text": self.text(n, self.offset),
                           "details": {"finish_reason": "length", "generated_tokens": n, "seed": None}}).encode()


# -- Triton: /v2/models/<model>/generate[_stream] ---------------------------------------------------

def read_triton(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """Triton: the model named in the path (else the body's), the words of ``text_input``, ``max_tokens``;
    ``generate_stream`` streams whatever the body says."""
    return Request(_words(body.get("text_input"), "text_input"), _first(body, "max_tokens"),
                   path.endswith("/generate_stream"), path.split("/")[3] or body.get("model"),
                   cumulative=headers.get("x-sim-text") == "cumulative")


class TritonWriter(Writer):
    """Triton ``generate_stream``: ``{"model_name", "model_version", "text_output"}`` per token, delta or
    cumulative text; no ``[DONE]``, no usage."""

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self.cumulative = request.cumulative
        self.parts: list[str] = []

    def token(self, i: int, last: bool) -> bytes:
        text = TOKEN_TEXT[(self.offset + i) % len(TOKEN_TEXT)]
        self.parts.append(text)
        out = "".join(self.parts) if self.cumulative else text
        return sse({"context_logits": 0.0, "cum_log_probs": 0.0, "generation_logits": 0.0,
                    "model_name": self.model, "model_version": "1", "output_log_probs": [0.0],
                    "sequence_end": False, "sequence_id": 0, "sequence_start": False, "text_output": out})

    def end(self, n: int, cached: int = 0) -> bytes:
        return b""

    def full(self, n: int, cached: int = 0) -> bytes:
        return json.dumps({"model_name": self.model, "model_version": "1",
                           "text_output": self.text(n, self.offset)}).encode()


# -- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Api:
    """One API: its reader (body as a dict, path, lower-case headers -> :class:`Request`) and writer."""

    name: str
    read: Callable[[dict[str, Any], str, dict[str, str]], Request]
    writer: type[Writer]
    openai: bool = False  # the request names a model --strict-model may refuse


APIS: dict[str, Api] = {api.name: api for api in (
    Api("chat", read_chat, ChatWriter, openai=True),
    Api("completions", read_completions, CompletionsWriter, openai=True),
    Api("sglang", read_sglang, SGLangWriter),
    Api("tgi", read_tgi, TGIWriter),
    Api("triton", read_triton, TritonWriter),
)}

#: what :func:`route` answers for ``/generate``: SGLang's or TGI's, told apart by the body (TGI's has "inputs")
GENERATE = "generate"
_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/generate": GENERATE,
          "/generate_stream": "tgi"}


def route(path: str) -> str | None:
    """The API a generation path (no query string) belongs to: a name in :data:`APIS`, :data:`GENERATE`,
    or None (not a generation route)."""
    name = _PATHS.get(path)
    if name is not None:
        return name
    if path.startswith("/v2/models/") and path.endswith(("/generate_stream", "/generate")):
        return "triton"
    return None


def read(name: str, body: bytes, path: str, headers: dict[str, str]) -> tuple[Api, Request]:
    """Decode a generation request for the API :func:`route` named. Raises :class:`HTTPFailure` 400 when
    the body is not a JSON object or the API's reader finds a field of the wrong type."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise HTTPFailure(400, "request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise HTTPFailure(400, "request body must be a JSON object")
    if name == GENERATE:
        name = "tgi" if "inputs" in obj else "sglang"
    api = APIS[name]
    return api, api.read(obj, path, headers)
