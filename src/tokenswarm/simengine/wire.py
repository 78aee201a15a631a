"""Byte-exact response formats of the simulated engine, one writer class per dialect.

A writer is made per request and produces ready-to-send SSE event payloads
(``data: ...\\n\\n``): what goes out at arrival, one event per token, and the
closing events. Per-token work is one bytes concatenation: everything but the
token text is prebuilt. The shapes follow what vLLM's OpenAI server sends
(DESIGN.md, "Wire formats").
"""

from __future__ import annotations

import json
import time
from typing import Any

from tokenswarm.textgen import VOCAB

#: each vocabulary word as the JSON string of one output token (" word")
TOKEN_JSON: tuple[bytes, ...] = tuple(json.dumps(" " + w).encode() for w in VOCAB)
TOKEN_TEXT: tuple[str, ...] = tuple(" " + w for w in VOCAB)


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class Writer:
    """Formats one request's response. Subclasses fill in the dialect's shapes."""

    content_type = "text/event-stream"
    id_prefix = ""

    def __init__(self, request_id: str, model: str, prompt_tokens: int, include_usage: bool) -> None:
        self.id = self.id_prefix + request_id
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.include_usage = include_usage
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


class ChatWriter(Writer):
    """``/v1/chat/completions`` chunks: role-only first chunk, one content chunk per token,
    finish_reason on the last, a ``choices: []`` usage chunk, ``[DONE]``."""

    id_prefix = "chatcmpl-"

    def __init__(self, request_id: str, model: str, prompt_tokens: int, include_usage: bool, offset: int = 0):
        super().__init__(request_id, model, prompt_tokens, include_usage)
        self.offset = offset
        head = json.dumps(
            {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": model},
            separators=(",", ":"),
        )[:-1]
        self._head = head
        self._pre = ("data: " + head + ',"choices":[{"index":0,"delta":{"content":').encode()
        self._post = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        self._post_last = b'},"logprobs":null,"finish_reason":"length"}]}\n\n'

    def start(self) -> bytes:
        return (
            "data: " + self._head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            '"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()

    def token(self, i: int, last: bool) -> bytes:
        word = TOKEN_JSON[(self.offset + i) % len(TOKEN_JSON)]
        return self._pre + word + (self._post_last if last else self._post)

    def end(self, n: int, cached: int = 0) -> bytes:
        out = b""
        if self.include_usage:
            out = sse(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
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
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.text(n, self.offset)},
                        "logprobs": None,
                        "finish_reason": "length",
                    }
                ],
                "usage": self.usage(n, cached),
            }
        ).encode()


class CompletionsWriter(Writer):
    """``/v1/completions`` chunks: ``choices[0].text`` per token, usage chunk, ``[DONE]``."""

    id_prefix = "cmpl-"

    def __init__(self, request_id: str, model: str, prompt_tokens: int, include_usage: bool, offset: int = 0):
        super().__init__(request_id, model, prompt_tokens, include_usage)
        self.offset = offset
        head = json.dumps(
            {"id": self.id, "object": "text_completion", "created": self.created, "model": model},
            separators=(",", ":"),
        )[:-1]
        self._pre = ("data: " + head + ',"choices":[{"index":0,"text":').encode()
        self._post = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self._post_last = b',"logprobs":null,"finish_reason":"length"}]}\n\n'

    def token(self, i: int, last: bool) -> bytes:
        word = TOKEN_JSON[(self.offset + i) % len(TOKEN_JSON)]
        return self._pre + word + (self._post_last if last else self._post)

    def end(self, n: int, cached: int = 0) -> bytes:
        out = b""
        if self.include_usage:
            out = sse(
                {
                    "id": self.id,
                    "object": "text_completion",
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
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "text": self.text(n, self.offset), "logprobs": None, "finish_reason": "length"}
                ],
                "usage": self.usage(n, cached),
            }
        ).encode()


class SGLangWriter(Writer):
    """SGLang ``/generate``: ``{"text": <cumulative>, "meta_info": {...}}`` per token, then ``[DONE]``."""

    def __init__(self, request_id: str, model: str, prompt_tokens: int, include_usage: bool, offset: int = 0):
        super().__init__(request_id, model, prompt_tokens, include_usage)
        self.offset = offset
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


class TGIWriter(Writer):
    """TGI ``/generate_stream``: one ``{"index", "token", "generated_text": null, "details": null}`` per token;
    the last carries ``generated_text`` and ``details``; no ``[DONE]``."""

    def __init__(self, request_id: str, model: str, prompt_tokens: int, include_usage: bool, offset: int = 0):
        super().__init__(request_id, model, prompt_tokens, include_usage)
        self.offset = offset
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


class TritonWriter(Writer):
    """Triton ``generate_stream``: ``{"model_name", "model_version", "text_output"}`` per token, delta or
    cumulative text; no ``[DONE]``, no usage."""

    def __init__(self, request_id: str, model: str, prompt_tokens: int, include_usage: bool, offset: int = 0,
                 cumulative: bool = False):
        super().__init__(request_id, model, prompt_tokens, include_usage)
        self.offset = offset
        self.cumulative = cumulative
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
