"""Anthropic's Messages API: ``POST /v1/messages`` with ``stream: true`` (Anthropic, vLLM, SGLang, LiteLLM and
other gateways' Anthropic endpoints).

Requests carry the key in ``x-api-key`` and the API's version in ``anthropic-version``; the body is
``{"model", "messages", "max_tokens", "stream": true}``, a system message moved to the top-level ``system``
(the API takes no ``system`` role). Events (Anthropic's API reference, "Streaming Messages"), each an SSE
``event: <type>`` line with a JSON ``data`` object whose ``type`` says the same:

* ``message_start``: ``message.id`` and ``message.usage`` = ``{input_tokens, cache_creation_input_tokens,
  cache_read_input_tokens, output_tokens}``. Its ``output_tokens`` is a placeholder (1, or a few), not the
  answer's count: it is not read. Input tokens are the three input counts summed (``input_tokens`` leaves
  out what the cache served); ``cached_tokens`` is ``cache_read_input_tokens``.
* output, each starting TTFT and adding an ITL gap: ``content_block_delta`` with ``text_delta`` (visible
  text), ``thinking_delta`` (reasoning), ``input_json_delta`` (a tool call's arguments); a
  ``content_block_start`` of a ``tool_use`` block carries the tool's name (output too). Several tokens ride
  on one delta: the count comes from usage, never from the events.
* ``message_delta``: ``delta.stop_reason`` (``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``,
  ``pause_turn``, ``refusal``: finished answers, kept as the finish reason) and ``usage.output_tokens``, the
  answer's count (cumulative; newer servers repeat the input counts there too).
* ``message_stop`` ends the stream; ``ping`` and ``content_block_stop`` carry nothing; a
  ``signature_delta`` signs thinking already streamed (not output).
* ``error`` (``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}``): a
  failure, recorded as ``overloaded_error: Overloaded``.
"""

from __future__ import annotations

import json
from typing import Any

from tokenswarm.dialects.base import RequestOptions, TypedEvents, finish_error, with_sampling
from tokenswarm.measure import NOTHING, Event, Usage

ANTHROPIC_VERSION = "2023-06-01"
KIND_TOOL_CALLS = "tool_calls"
DONE = Event(done=True)
#: content blocks whose ``name`` is generated output when they start (a tool call begins)
TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})


def anthropic_usage(u: Any, *, output: bool) -> Usage | None:
    """An Anthropic usage object as :class:`Usage`: input tokens summed over the cache's three counts (when
    ``input_tokens`` is there), ``output_tokens`` only when ``output`` (message_delta's, not message_start's
    placeholder)."""
    if not isinstance(u, dict):
        return None
    prompt = u.get("input_tokens")
    cached = u.get("cache_read_input_tokens")
    if isinstance(prompt, int):
        for extra in (u.get("cache_creation_input_tokens"), cached):
            if isinstance(extra, int):
                prompt += extra
    if output and not prompt:
        prompt = None  # a message_delta's input count of 0 (some gateways) is not the request's
    return Usage(prompt_tokens=prompt, completion_tokens=u.get("output_tokens") if output else None,
                 cached_tokens=cached if isinstance(cached, int) else None)


def _split_system(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(the system text, the other messages): the Messages API takes the system prompt apart."""
    system = [str(m.get("content") or "") for m in messages if m.get("role") == "system"]
    return "\n".join(system), [m for m in messages if m.get("role") != "system"]


class AnthropicMessages(TypedEvents):
    """``POST /v1/messages`` with ``stream: true``; text in ``content_block_delta`` events, usage in
    ``message_start`` (input) and ``message_delta`` (output)."""

    name = "anthropic-messages"
    path = "/v1/messages"
    chat = True
    auth_header = "x-api-key"
    auth_scheme = ""
    fixed_headers = {"anthropic-version": ANTHROPIC_VERSION}
    tokens_from = "message_delta's usage.output_tokens (input: message_start's), else --tokenizer, else events"

    media_kinds = frozenset({"image"})

    def media_part(self, part: Any) -> dict[str, Any]:
        """An ``image`` block with its base64 source (a ``url`` source for an image the server fetches)."""
        if part.remote:
            return {"type": "image", "source": {"type": "url", "url": part.data}}
        return {"type": "image", "source": {"type": "base64", "media_type": part.mime, "data": part.data}}

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        body: dict[str, Any] = {"model": opts.model}
        if prompt.messages:
            system, messages = _split_system(prompt.messages)
            if system:
                body["system"] = system
            body["messages"] = messages
        else:
            body["messages"] = [{"role": "user", "content": prompt.text}]
        if prompt.media:
            body["messages"] = self.with_media(body["messages"], prompt.media)
        body[self.cap_field(opts)] = prompt.max_tokens or opts.max_tokens
        body["stream"] = opts.stream
        return with_sampling(body, opts)

    def parse(self, obj: dict[str, Any]) -> Event:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if not isinstance(delta, dict):
                return NOTHING
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                return Event(text=text) if isinstance(text, str) and text else NOTHING
            if dtype == "thinking_delta":
                text = delta.get("thinking")
                return Event(reasoning=text) if isinstance(text, str) and text else NOTHING
            if dtype == "input_json_delta":
                text = delta.get("partial_json")
                return Event(extra=text, kind=KIND_TOOL_CALLS) if isinstance(text, str) and text else NOTHING
            return NOTHING  # signature_delta, citations_delta
        if kind == "ping" or kind == "content_block_stop":
            return NOTHING
        if kind == "message_delta":
            delta = obj.get("delta")
            finish = delta.get("stop_reason") if isinstance(delta, dict) else None
            return Event(usage=anthropic_usage(obj.get("usage"), output=True), finish=finish,
                         error=finish_error(finish))
        if kind == "message_start":
            msg = obj.get("message")
            if not isinstance(msg, dict):
                return NOTHING
            return Event(usage=anthropic_usage(msg.get("usage"), output=False), response_id=msg.get("id"))
        if kind == "content_block_start":
            block = obj.get("content_block")
            if not isinstance(block, dict):
                return NOTHING
            btype = block.get("type")
            if btype in TOOL_BLOCKS and block.get("name"):
                return Event(extra=str(block["name"]), kind=KIND_TOOL_CALLS)
            if btype == "text" and block.get("text"):
                return Event(text=str(block["text"]))
            if btype == "thinking" and block.get("thinking"):
                return Event(reasoning=str(block["thinking"]))
            return NOTHING
        if kind == "message_stop":
            return DONE
        if kind == "error" or "error" in obj:
            err = obj.get("error")
            if isinstance(err, dict):
                etype, msg = err.get("type"), err.get("message")
                text = ": ".join(str(p) for p in (etype, msg) if p)
                return Event(error=text or "the server sent an error event")
            return Event(error=str(err or obj.get("message") or "the server sent an error event"))
        return NOTHING

    def parse_whole(self, obj: dict[str, Any]) -> Event:
        """A whole ``message`` (``stream: false``): its content blocks' text, ``usage`` (both counts), its
        ``stop_reason``; an ``{"type": "error", ...}`` body is the server's failure."""
        if obj.get("type") == "error" or "error" in obj:
            return self.parse({**obj, "type": "error"})
        if obj.get("type") != "message":
            return TypedEvents.parse_whole(self, obj)
        text, reasoning, extra = [], [], []
        for block in obj.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                text.append(str(block.get("text") or ""))
            elif btype == "thinking":
                reasoning.append(str(block.get("thinking") or ""))
            elif btype in TOOL_BLOCKS:
                extra.append(str(block.get("name") or "") + json.dumps(block.get("input") or {}))
        usage = anthropic_usage(obj.get("usage"), output=True)
        finish = obj.get("stop_reason")
        return Event(text="".join(text), reasoning="".join(reasoning), extra="".join(extra),
                     kind=KIND_TOOL_CALLS if extra else "", usage=usage, finish=finish, response_id=obj.get("id"),
                     error=finish_error(finish))
