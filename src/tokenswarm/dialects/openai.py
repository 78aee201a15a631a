"""OpenAI-compatible streams: ``/v1/chat/completions`` and ``/v1/completions``.

Spoken by vLLM, SGLang, LMDeploy, TGI's Messages API, LiteLLM, Higress,
llama.cpp and most gateways. Shapes handled (see DESIGN.md, "Wire formats"):
a role-only first chunk, empty-content chunks, ``content`` and reasoning
deltas (``reasoning_content`` or ``reasoning``), tool calls (``tool_calls``
pieces, the legacy ``function_call``), ``refusal``, ``finish_reason`` (``abort``
and ``error`` mean the engine gave up: a failure), a usage
chunk with ``choices: []`` or with an empty delta (gateways rewrite it that
way), usage on the finish chunk (LMDeploy), usage on every chunk
(continuous usage stats), in-stream ``{"error": ...}`` objects, ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

from tokenswarm.dialects.base import Dialect, RequestOptions, error_text, finish_error, usage_of, with_sampling
from tokenswarm.measure import Event


def _common(body: dict[str, Any], prompt: Any, opts: RequestOptions) -> dict[str, Any]:
    body["model"] = opts.model
    body[opts.max_tokens_field or "max_tokens"] = prompt.max_tokens or opts.max_tokens
    body["stream"] = opts.stream
    if opts.include_usage and opts.stream:
        body["stream_options"] = {"include_usage": True}
    return with_sampling(body, opts)


def _event(obj: dict[str, Any], text: str, reasoning: str, finish: Any, extra: str = "", kind: str = "") -> Event:
    usage = usage_of(obj.get("usage"))
    tokens = None
    if usage is not None and (text or reasoning or extra):
        # usage riding on an output chunk is a running count (continuous usage stats)
        tokens = usage.completion_tokens
    gave_up = finish_error(finish, obj.get("error") or None)
    return Event(
        text=text,
        reasoning=reasoning,
        usage=usage,
        finish=finish,
        response_id=obj.get("id"),
        tokens=tokens,
        extra=extra,
        kind=kind,
        error=gave_up,
    )


def _tool_text(delta: dict[str, Any]) -> tuple[str, str]:
    """Generated output of a delta that is neither content nor reasoning: (text, kind). ``tool_calls``
    pieces (each call's function name and argument fragment), the legacy ``function_call``, ``refusal``."""
    calls = delta.get("tool_calls")
    if calls and isinstance(calls, list):
        parts = []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                parts.append((fn.get("name") or "") + (fn.get("arguments") or ""))
        text = "".join(parts)
        if text:
            return text, "tool_calls"
    fn = delta.get("function_call")
    if isinstance(fn, dict):
        text = (fn.get("name") or "") + (fn.get("arguments") or "")
        if text:
            return text, "function_call"
    refusal = delta.get("refusal")
    if refusal and isinstance(refusal, str):
        return refusal, "refusal"
    return "", ""


class OpenAIChat(Dialect):
    """``POST /v1/chat/completions`` with ``stream: true``; text in ``choices[0].delta``."""

    name = "openai-chat"
    path = "/v1/chat/completions"
    chat = True
    tokens_from = "the usage chunk (stream_options.include_usage), else --tokenizer, else output events"
    usage_after_finish = True

    media_kinds = frozenset({"image", "audio"})

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        messages = prompt.messages or [{"role": "user", "content": prompt.text}]
        if prompt.media:
            messages = self.with_media(messages, prompt.media)
        return _common({"messages": messages}, prompt, opts)

    def media_part(self, part: Any) -> dict[str, Any]:
        """``image_url`` with a data URL; audio as ``input_audio`` (base64 data and its format)."""
        if part.kind == "audio":
            return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
        return {"type": "image_url", "image_url": {"url": part.url}}

    def parse(self, obj: dict[str, Any]) -> Event:
        err = error_text(obj)
        if err is not None:
            return Event(error=err)
        text = reasoning = extra = kind = ""
        finish = None
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                text = delta.get("content") or ""
                reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                if len(delta) > 1 or not (text or reasoning):  # a lone content delta is the common case
                    extra, kind = _tool_text(delta)
            finish = choice.get("finish_reason")
        return _event(obj, text, reasoning, finish, extra, kind)

    def parse_whole(self, obj: dict[str, Any]) -> Event:
        """A ``chat.completion`` (``stream: false``): ``choices[0].message`` and ``usage``."""
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return Dialect.parse_whole(self, obj)
        msg = choices[0].get("message") or {}
        text = msg.get("content") or "" if isinstance(msg, dict) else ""
        reasoning = (msg.get("reasoning_content") or msg.get("reasoning") or "") if isinstance(msg, dict) else ""
        extra, kind = _tool_text(msg) if isinstance(msg, dict) else ("", "")
        finish = choices[0].get("finish_reason")
        return Event(text=str(text), reasoning=str(reasoning), extra=extra, kind=kind, finish=finish,
                     usage=usage_of(obj.get("usage")), response_id=obj.get("id"), error=finish_error(finish))


class OpenAICompletions(Dialect):
    """``POST /v1/completions`` with ``stream: true``; text in ``choices[0].text``."""

    name = "openai-completions"
    path = "/v1/completions"
    tokens_from = "the usage chunk (stream_options.include_usage), else --tokenizer, else output events"
    usage_after_finish = True

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        return _common({"prompt": prompt.text}, prompt, opts)

    def parse(self, obj: dict[str, Any]) -> Event:
        err = error_text(obj)
        if err is not None:
            return Event(error=err)
        text = ""
        finish = None
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            text = choice.get("text") or ""
            finish = choice.get("finish_reason")
        return _event(obj, text, "", finish)

    def parse_whole(self, obj: dict[str, Any]) -> Event:
        """A ``text_completion`` (``stream: false``): ``choices[0].text`` and ``usage``."""
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return Dialect.parse_whole(self, obj)
        finish = choices[0].get("finish_reason")
        return Event(text=str(choices[0].get("text") or ""), finish=finish, usage=usage_of(obj.get("usage")),
                     response_id=obj.get("id"), error=finish_error(finish))
