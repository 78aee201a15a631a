"""The simulated engine's APIs: how each reads a request body and writes its response, byte for byte.

Nine APIs, one entry each in :data:`APIS`: ``chat`` and ``completions``
(OpenAI ``/v1/chat/completions`` and ``/v1/completions``), ``responses`` (OpenAI
``/v1/responses``), ``messages`` (Anthropic ``/v1/messages``), ``embeddings``
(``/v1/embeddings``) and ``rerank`` (``/v1/rerank``, ``/rerank``, ``/v2/rerank``: one JSON
answer after one engine step), ``sglang``
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

import base64
import io
import json
import math
import time
import wave
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
    inputs: int = 1  # embeddings' inputs, rerank's documents


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

    def error_event(self, message: str) -> bytes:
        """A mid-stream failure in this API's words (the ``error_event`` fault): an ``{"error": ...}`` object, as
        OpenAI-compatible servers send."""
        return sse({"error": {"message": message, "type": "InternalServerError", "code": 500}})

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


#: image tokens: one per 28 x 28 pixel patch (Qwen2-VL's merged patches); audio: 25 per second (Qwen2-Audio)
IMAGE_PATCH_PX = 28
AUDIO_TOKENS_PER_S = 25


def media_tokens(kind: str, data: str) -> int:
    """The input tokens the engine counts for an image or audio clip in base64 ``data`` (a data URL's or a
    bare one): ``ceil(w / 28) * ceil(h / 28)`` for an image (its header read by Pillow), 25 per second for
    WAV audio; 400 for media it cannot read (a URL it would fetch); 0 for a part with no data at all."""
    if not data:
        return 0
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=False)
        if kind == "audio":
            with wave.open(io.BytesIO(raw)) as w:
                return max(1, math.ceil(w.getnframes() / w.getframerate() * AUDIO_TOKENS_PER_S))
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            width, height = im.size
        return math.ceil(width / IMAGE_PATCH_PX) * math.ceil(height / IMAGE_PATCH_PX)
    except Exception:  # noqa: BLE001 - anything unreadable counts as a fixed amount
        return 400


def _media_of(part: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, base64 data or URL) of an image or audio content part, in OpenAI's, Responses' or Anthropic's
    shape; None for other parts."""
    kind = part.get("type")
    if kind == "image_url":
        url = part.get("image_url")
        return "image", str(url.get("url", "") if isinstance(url, dict) else url or "")
    if kind == "input_image":
        return "image", str(part.get("image_url") or "")
    if kind == "image":
        src = part.get("source")
        return "image", str(src.get("data") or src.get("url") or "") if isinstance(src, dict) else ""
    if kind == "input_audio":
        audio = part.get("input_audio")
        return "audio", str(audio.get("data", "")) if isinstance(audio, dict) else ""
    return None


def _part_words(part: dict[str, Any]) -> list[str]:
    """A content part's tokens: a text part's words; an image's or audio's :func:`media_tokens`, as words unique
    to that content (so the prefix cache matches only the same media)."""
    media = _media_of(part)
    if media is None:
        return str(part.get("text", "")).split()
    kind, data = media
    tag = f"<{kind}:{hash(data[-64:]) & 0xFFFFFFFF:x}:"
    return [f"{tag}{i}>" for i in range(media_tokens(kind, data))]


def _content_words(content: Any) -> list[str]:
    if isinstance(content, str):
        return content.split()
    if isinstance(content, list):  # content parts: text, images, audio
        return [w for p in content if isinstance(p, dict) for w in _part_words(p)]
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


# -- OpenAI Responses: /v1/responses --------------------------------------------------------------

def _input_words(value: Any, field: str) -> list[str]:
    """The words of a Responses ``input`` or a Messages ``system``: a string, or a list of messages / content
    parts (each a string, or an object whose ``text`` or ``content`` holds them)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if not isinstance(value, list):
        raise HTTPFailure(400, f"'{field}' must be a string or a list")
    words: list[str] = []
    for item in value:
        if isinstance(item, str):
            words += item.split()
        elif isinstance(item, dict):
            words += _content_words(item["content"]) if "content" in item else str(item.get("text", "")).split()
    return words


def read_responses(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """``/v1/responses``: the words of ``input`` (a string or messages) and ``instructions``;
    ``max_output_tokens``."""
    if body.get("input") is None:
        raise HTTPFailure(400, "'input' is required")
    words = _input_words(body.get("instructions"), "instructions") + _input_words(body.get("input"), "input")
    return Request(words, _first(body, "max_output_tokens"), _stream(body), body.get("model"))


def event(name: str, obj: dict[str, Any]) -> bytes:
    """One named server-sent event: ``event: <name>`` and the JSON ``data`` line."""
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class ResponsesWriter(Writer):
    """``/v1/responses`` events as OpenAI sends them: ``response.created``, ``response.in_progress``, the
    message item and its text part added, one ``response.output_text.delta`` per token, the text, part and
    item done, then ``response.incomplete`` (``max_output_tokens``: the engine always stops at the cap, as
    chat's ``finish_reason: length``) carrying ``response.usage``. Each event has its ``sequence_number``."""

    id_prefix = "resp_"

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self.seq = 0
        self.item = "msg_" + request_id
        self._pre = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                     b'"sequence_number":')
        self._mid = ('"item_id":"' + self.item + '","output_index":0,"content_index":0,"delta":').encode()

    def _ev(self, name: str, **fields: Any) -> bytes:
        self.seq += 1
        return event(name, {"type": name, "sequence_number": self.seq - 1, **fields})

    def response(self, status: str, n: int | None = None, cached: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "object": "response", "created_at": self.created, "status": status,
                               "model": self.model, "output": [], "usage": None, "error": None,
                               "incomplete_details": None}
        if n is not None:
            out["output"] = [self._message(self.text(n, self.offset))]
            out["usage"] = self.usage(n, cached)
            out["incomplete_details"] = {"reason": "max_output_tokens"}
        return out

    def _message(self, text: str) -> dict[str, Any]:
        return {"id": self.item, "type": "message", "status": "incomplete", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}

    def usage(self, n: int, cached: int = 0) -> dict[str, Any]:
        return {"input_tokens": self.prompt_tokens, "input_tokens_details": {"cached_tokens": cached or self.cached},
                "output_tokens": n, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.prompt_tokens + n}

    def start(self) -> bytes:
        item = {"id": self.item, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        return (self._ev("response.created", response=self.response("in_progress"))
                + self._ev("response.in_progress", response=self.response("in_progress"))
                + self._ev("response.output_item.added", output_index=0, item=item)
                + self._ev("response.content_part.added", item_id=self.item, output_index=0, content_index=0,
                           part={"type": "output_text", "text": "", "annotations": []}))

    def token(self, i: int, last: bool) -> bytes:
        self.seq += 1
        word = TOKEN_JSON[(self.offset + i) % len(TOKEN_JSON)]
        return self._pre + str(self.seq - 1).encode() + b"," + self._mid + word + b',"logprobs":[]}\n\n'

    def end(self, n: int, cached: int = 0) -> bytes:
        text = self.text(n, self.offset)
        part = {"type": "output_text", "text": text, "annotations": []}
        return (self._ev("response.output_text.done", item_id=self.item, output_index=0, content_index=0,
                         text=text, logprobs=[])
                + self._ev("response.content_part.done", item_id=self.item, output_index=0, content_index=0,
                           part=part)
                + self._ev("response.output_item.done", output_index=0, item=self._message(text))
                + self._ev("response.incomplete", response=self.response("incomplete", n, cached)))

    def full(self, n: int, cached: int = 0) -> bytes:
        return json.dumps(self.response("incomplete", n, cached)).encode()

    def error_event(self, message: str) -> bytes:
        """``response.failed`` with the response's ``error`` (code and message)."""
        resp = {**self.response("failed"), "error": {"code": "server_error", "message": message}}
        return self._ev("response.failed", response=resp)


# -- Anthropic Messages: /v1/messages ---------------------------------------------------------------

def read_messages(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """``/v1/messages``: the words of ``system`` and of every message's content (a string or text blocks);
    ``max_tokens``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPFailure(400, "'messages' must be a non-empty list")
    words = _input_words(body.get("system"), "system")
    words += [w for m in messages if isinstance(m, dict) for w in _content_words(m.get("content"))]
    return Request(words, _first(body, "max_tokens"), _stream(body), body.get("model"))


class MessagesWriter(Writer):
    """``/v1/messages`` events as Anthropic sends them: ``message_start`` (input usage; ``output_tokens`` 1, the
    API's placeholder), a text ``content_block_start``, a ``ping``, one ``content_block_delta`` per token,
    ``content_block_stop``, ``message_delta`` (``stop_reason: max_tokens``, ``usage.output_tokens``),
    ``message_stop``."""

    id_prefix = "msg_"

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self._pre = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                     b'"delta":{"type":"text_delta","text":')

    def usage(self, n: int, cached: int = 0) -> dict[str, Any]:
        cached = cached or self.cached
        return {"input_tokens": self.prompt_tokens - cached, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cached, "output_tokens": n}

    def _message(self, content: list[Any], stop: str | None, usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "content": content, "model": self.model,
                "stop_reason": stop, "stop_sequence": None, "usage": usage}

    def start(self) -> bytes:
        return (event("message_start", {"type": "message_start", "message": self._message([], None, self.usage(1))})
                + event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})
                + event("ping", {"type": "ping"}))

    def token(self, i: int, last: bool) -> bytes:
        return self._pre + TOKEN_JSON[(self.offset + i) % len(TOKEN_JSON)] + b"}}\n\n"

    def end(self, n: int, cached: int = 0) -> bytes:
        return (event("content_block_stop", {"type": "content_block_stop", "index": 0})
                + event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                                          "usage": {"output_tokens": n}})
                + event("message_stop", {"type": "message_stop"}))

    def full(self, n: int, cached: int = 0) -> bytes:
        content = [{"type": "text", "text": self.text(n, self.offset)}]
        return json.dumps(self._message(content, "max_tokens", self.usage(n, cached))).encode()

    def error_event(self, message: str) -> bytes:
        """Anthropic's ``event: error`` (an ``api_error``)."""
        return event("error", {"type": "error", "error": {"type": "api_error", "message": message}})


# -- embeddings and rerank: one JSON answer ---------------------------------------------------------

def _texts(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise HTTPFailure(400, f"'{field}' must be a string or a non-empty list of strings")


def read_embeddings(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """``/v1/embeddings``: the words of every ``input``; one engine step (a forward pass), never streamed."""
    texts = _texts(body.get("input"), "input")
    return Request([w for t in texts for w in t.split()], 1, False, body.get("model"), inputs=len(texts))


def read_rerank(body: dict[str, Any], path: str, headers: dict[str, str]) -> Request:
    """``/v1/rerank`` (Cohere/Jina shape): the words of ``query`` and every document; one engine step."""
    query = body.get("query")
    if not isinstance(query, str):
        raise HTTPFailure(400, "'query' must be a string")
    docs = _texts(body.get("documents"), "documents")
    return Request(query.split() + [w for d in docs for w in d.split()], 1, False, body.get("model"),
                   inputs=len(docs))


class EmbeddingsWriter(Writer):
    """``/v1/embeddings``: ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
    "model", "usage": {"prompt_tokens", "total_tokens"}}``, an 8-number vector per input."""

    content_type = "application/json"
    id_prefix = "embd-"
    DIM = 8

    def __init__(self, request_id: str, model: str, request: Request, offset: int = 0) -> None:
        super().__init__(request_id, model, request, offset)
        self.inputs = request.inputs

    def token(self, i: int, last: bool) -> bytes:
        return b""

    def end(self, n: int, cached: int = 0) -> bytes:
        return b""

    def full(self, n: int, cached: int = 0) -> bytes:
        vec = [round(((self.offset + k) % 17) / 17.0, 4) for k in range(self.DIM)]
        return json.dumps({"id": self.id, "object": "list", "model": self.model,
                           "data": [{"object": "embedding", "index": i, "embedding": vec} for i in range(self.inputs)],
                           "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}}).encode()


class RerankWriter(EmbeddingsWriter):
    """``/v1/rerank``: ``{"id", "model", "results": [{"index", "relevance_score"}], "usage": {"total_tokens"}}``,
    the documents in falling score order."""

    id_prefix = "rerank-"

    def full(self, n: int, cached: int = 0) -> bytes:
        results = [{"index": i, "relevance_score": round(1.0 / (i + 1), 4)} for i in range(self.inputs)]
        return json.dumps({"id": self.id, "model": self.model, "results": results,
                           "usage": {"total_tokens": self.prompt_tokens}}).encode()


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
    Api("responses", read_responses, ResponsesWriter, openai=True),
    Api("messages", read_messages, MessagesWriter, openai=True),
    Api("embeddings", read_embeddings, EmbeddingsWriter, openai=True),
    Api("rerank", read_rerank, RerankWriter, openai=True),
    Api("sglang", read_sglang, SGLangWriter),
    Api("tgi", read_tgi, TGIWriter),
    Api("triton", read_triton, TritonWriter),
)}

#: what :func:`route` answers for ``/generate``: SGLang's or TGI's, told apart by the body (TGI's has "inputs")
GENERATE = "generate"
_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/responses": "responses",
          "/v1/messages": "messages", "/v1/embeddings": "embeddings", "/v1/rerank": "rerank", "/rerank": "rerank",
          "/v2/rerank": "rerank", "/generate": GENERATE, "/generate_stream": "tgi"}


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
