"""OpenAI's Responses API: ``POST /v1/responses`` with ``stream: true`` (OpenAI, vLLM, SGLang, LiteLLM).

Semantic events, each an SSE ``event: <type>`` line with a JSON ``data`` object whose ``type`` says the same
(the ``type`` is read; servers that leave out the ``event:`` line are read the same way). Shapes, from OpenAI's
API reference ("Streaming events"):

* output, each starting TTFT and adding an ITL gap: ``response.output_text.delta`` (visible text),
  ``response.reasoning_text.delta`` and ``response.reasoning_summary_text.delta`` (reasoning),
  ``response.function_call_arguments.delta``, ``response.custom_tool_call_input.delta`` and
  ``response.mcp_call_arguments.delta`` (tool calls; a function call's name arrives in
  ``response.output_item.added``), ``response.refusal.delta`` (a refusal); each carries its text in ``delta``;
* ``response.output_text.done`` and the other ``*.done`` events repeat text already streamed: not output;
* the end: ``response.completed`` (``response.status`` is the finish reason), or ``response.incomplete``
  (``response.incomplete_details.reason``, e.g. ``max_output_tokens``: a capped answer, like chat's
  ``length``, so not a failure); both carry ``response.usage`` = ``{input_tokens, input_tokens_details:
  {cached_tokens}, output_tokens, output_tokens_details: {reasoning_tokens}}``, the stream's one usage;
* failures, in the server's words: ``response.failed`` (``response.error.code`` and ``message``) and
  ``error`` (``code``, ``message``), with or without an ``event: error`` line.

No ``[DONE]`` (it is read if a gateway adds one). The body caps the output with ``max_output_tokens``
(OpenAI's minimum is 16: the preflight asks for 16).
"""

from __future__ import annotations

from typing import Any

from tokenswarm.dialects.base import RequestOptions, TypedEvents, finish_error, with_sampling
from tokenswarm.measure import KIND_CONTENT, KIND_REASONING, NOTHING, Event, Usage

KIND_TOOL_CALLS = "tool_calls"
KIND_REFUSAL = "refusal"

#: the delta events carrying generated output, and the kind each is
DELTAS: dict[str, str] = {
    "response.output_text.delta": KIND_CONTENT,
    "response.reasoning_text.delta": KIND_REASONING,
    "response.reasoning_summary_text.delta": KIND_REASONING,
    "response.function_call_arguments.delta": KIND_TOOL_CALLS,
    "response.custom_tool_call_input.delta": KIND_TOOL_CALLS,
    "response.mcp_call_arguments.delta": KIND_TOOL_CALLS,
    "response.refusal.delta": KIND_REFUSAL,
}
#: output items whose ``name`` is generated output when they are added (a tool call begins)
TOOL_ITEMS = frozenset({"function_call", "custom_tool_call", "mcp_call"})


def responses_usage(u: Any) -> Usage | None:
    """A Responses usage object (``input_tokens``, ``output_tokens`` and their details) as :class:`Usage`."""
    if not isinstance(u, dict):
        return None
    indet = u.get("input_tokens_details")
    outdet = u.get("output_tokens_details")
    return Usage(
        prompt_tokens=u.get("input_tokens"),
        completion_tokens=u.get("output_tokens"),
        reasoning_tokens=outdet.get("reasoning_tokens") if isinstance(outdet, dict) else None,
        cached_tokens=indet.get("cached_tokens") if isinstance(indet, dict) else None,
    )


def _failure(kind: str, err: Any) -> str:
    """``response.failed: <code>: <message>`` from an error object (or whatever the server put there)."""
    if isinstance(err, dict):
        code, msg = err.get("code") or err.get("type"), err.get("message")
        text = ": ".join(str(p) for p in (code, msg) if p)
        return f"{kind}: {text}" if text else kind
    return f"{kind}: {err}" if err else kind


class OpenAIResponses(TypedEvents):
    """``POST /v1/responses`` with ``stream: true``; output in typed delta events, usage in
    ``response.completed``."""

    name = "openai-responses"
    path = "/v1/responses"
    chat = True
    max_tokens_field = "max_output_tokens"
    probe_tokens = 16  # OpenAI refuses a max_output_tokens below 16
    tokens_from = "response.completed's (or response.incomplete's) response.usage, else --tokenizer, else events"

    media_kinds = frozenset({"image"})

    def text_part(self, text: str) -> dict[str, Any]:
        return {"type": "input_text", "text": text}

    def media_part(self, part: Any) -> dict[str, Any]:
        return {"type": "input_image", "image_url": part.url}

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        given: Any = prompt.messages or prompt.text
        if prompt.media:
            given = self.with_media(prompt.messages or [{"role": "user", "content": prompt.text}], prompt.media)
        body: dict[str, Any] = {
            "model": opts.model,
            "input": given,
            self.cap_field(opts): prompt.max_tokens or opts.max_tokens,
            "stream": opts.stream,
        }
        return with_sampling(body, opts)

    def parse(self, obj: dict[str, Any]) -> Event:
        kind = obj.get("type")
        out = DELTAS.get(kind)  # type: ignore[arg-type]
        if out is not None:
            delta = obj.get("delta")
            if not isinstance(delta, str) or not delta:
                return NOTHING
            if out == KIND_CONTENT:
                return Event(text=delta)
            if out == KIND_REASONING:
                return Event(reasoning=delta)
            return Event(extra=delta, kind=out)
        if kind == "response.output_item.added":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") in TOOL_ITEMS and item.get("name"):
                return Event(extra=str(item["name"]), kind=KIND_TOOL_CALLS)
            return NOTHING
        if kind in ("response.completed", "response.incomplete"):
            resp = obj.get("response")
            resp = resp if isinstance(resp, dict) else {}
            finish = resp.get("status") or "completed"
            if kind == "response.incomplete":
                details = resp.get("incomplete_details")
                reason = details.get("reason") if isinstance(details, dict) else None
                finish = reason or "incomplete"
            return Event(usage=responses_usage(resp.get("usage")), finish=finish, done=True,
                         response_id=resp.get("id"), error=finish_error(finish))
        if kind == "response.created":
            resp = obj.get("response")
            return Event(response_id=resp.get("id")) if isinstance(resp, dict) else NOTHING
        if kind == "response.failed":
            resp = obj.get("response")
            err = resp.get("error") if isinstance(resp, dict) else None
            return Event(error=_failure("response.failed", err))
        if kind == "error" or (kind is None and "error" in obj):
            return Event(error=_failure("error", obj.get("error") if "error" in obj else obj))
        return NOTHING

    def parse_whole(self, obj: dict[str, Any]) -> Event:
        """A whole ``response`` object (``stream: false``): its output items' text, ``usage``, ``status``."""
        if obj.get("object") != "response" and "output" not in obj:
            return TypedEvents.parse_whole(self, obj)
        if obj.get("status") == "failed" or obj.get("error"):
            return Event(error=_failure("response.failed", obj.get("error")))
        text, reasoning, extra = [], [], []
        for item in obj.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                text += [str(c.get("text") or c.get("refusal") or "") for c in item.get("content") or []
                         if isinstance(c, dict)]
            elif item.get("type") == "reasoning":
                parts = (item.get("content") or []) + (item.get("summary") or [])
                reasoning += [str(c.get("text") or "") for c in parts if isinstance(c, dict)]
            elif item.get("type") in TOOL_ITEMS:
                extra.append(str(item.get("name") or "") + str(item.get("arguments") or item.get("input") or ""))
        finish = obj.get("status") or "completed"
        if finish == "incomplete" and isinstance(obj.get("incomplete_details"), dict):
            finish = obj["incomplete_details"].get("reason") or finish
        return Event(text="".join(text), reasoning="".join(reasoning), extra="".join(extra),
                     kind=KIND_TOOL_CALLS if extra else "", usage=responses_usage(obj.get("usage")), finish=finish,
                     response_id=obj.get("id"))
