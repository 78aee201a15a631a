"""The dialect interface: how one API builds a request body and reads its stream.

A dialect turns a :class:`~tokenswarm.datasets.Prompt` into a JSON body and
one server-sent event of the response into a :class:`~tokenswarm.measure.Event`.
SSE framing is :mod:`tokenswarm.sse`'s; what every dialect shares (``[DONE]``,
``event: error``, JSON objects, error shapes, finish reasons meaning the engine
gave up) lives here, so each dialect only reads its own JSON. Dialects are
pure: no I/O, no locust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokenswarm.measure import Event, Usage
from tokenswarm.sse import SSEEvent

DONE = Event(done=True)
SKIP = None  # an event that carries nothing (a keep-alive with empty data)


class MalformedEvent(ValueError):
    """A stream line the dialect cannot read (not JSON, or not the expected shape)."""


@dataclass
class RequestOptions:
    """What every request of a run shares: model and generation settings."""

    model: str = ""
    max_tokens: int = 128
    temperature: float | None = None
    ignore_eos: bool = False
    #: ask for a usage event (OpenAI ``stream_options.include_usage``); off (``--no-stream-usage``): the field
    #: is left out and output tokens are counted locally (``token_source`` says how)
    include_usage: bool = True
    #: --extra-body, merged last; a key whose value is None (JSON null) is removed from the body
    extra_body: dict[str, Any] = field(default_factory=dict)
    #: the body field that caps the output ("" : the dialect's :attr:`Dialect.max_tokens_field`); a preset
    #: or ``--max-tokens-field`` sets it (``max_completion_tokens`` for OpenAI's reasoning models)
    max_tokens_field: str = ""
    #: ask for a stream; off (``--no-stream``): ``stream: false``, the whole answer measured as E2E only
    stream: bool = True
    #: inputs per request of a batched API (embeddings' inputs, rerank's documents; ``--batch-size``)
    batch_size: int = 1


class Dialect:
    """Base class of API dialects. Subclasses set the class attributes and ``body``/``parse``."""

    name: ClassVar[str] = ""
    path: ClassVar[str] = ""  # the default endpoint path
    #: True when a stream must end with an explicit marker (``[DONE]``, a
    #: final event); a stream that stops before it is a failure.
    needs_end_marker: ClassVar[bool] = True
    #: True when a finished answer says so (a finish/stop reason); a stream that carried output and ended
    #: without one is ``truncated``. False for APIs that never send one (Triton, a template).
    sends_finish: ClassVar[bool] = True
    #: True when the usage comes in its own event after the finish reason (OpenAI's ``include_usage``): the
    #: answer is complete only once it is in. False where usage rides on the finish event or never comes.
    usage_after_finish: ClassVar[bool] = False
    chat: ClassVar[bool] = False  # takes messages rather than a prompt string
    #: the body field capping the output, unless the run names another (:attr:`RequestOptions.max_tokens_field`)
    max_tokens_field: ClassVar[str] = "max_tokens"
    #: the smallest cap the API accepts: the preflight's test request asks for this many tokens
    probe_tokens: ClassVar[int] = 1
    #: the header carrying the API key, and the scheme written before the key ("" : the key alone)
    auth_header: ClassVar[str] = "Authorization"
    auth_scheme: ClassVar[str] = "Bearer"
    #: headers every request of this API carries (Anthropic's ``anthropic-version``)
    fixed_headers: ClassVar[dict[str, str]] = {}
    #: where the API puts its token counts, for ``tokenswarm dialects`` and the docs' table
    tokens_from: ClassVar[str] = ""
    #: the API answers with a stream (False: embeddings, rerank: one JSON answer, E2E only)
    streams: ClassVar[bool] = True
    #: a request carries :attr:`RequestOptions.batch_size` prompts (:attr:`Prompt.batch`)
    batched: ClassVar[bool] = False
    #: the media a message of this API can carry (``image``, ``audio``; :mod:`tokenswarm.media`)
    media_kinds: ClassVar[frozenset[str]] = frozenset()

    def media_part(self, part: Any) -> dict[str, Any]:
        """One :class:`~tokenswarm.media.MediaPart` as this API's content part."""
        raise NotImplementedError

    def text_part(self, text: str) -> dict[str, Any]:
        """A text content part of this API."""
        return {"type": "text", "text": text}

    def with_media(self, messages: list[dict[str, Any]], media: Any) -> list[dict[str, Any]]:
        """``messages`` with ``media`` (MediaParts) added to the last user message, its text made a text part
        first; the others unchanged (copied, never the prompt's own)."""
        if not media:
            return messages
        out = list(messages)
        i = max((k for k, m in enumerate(out) if m.get("role") == "user"), default=len(out) - 1)
        content = out[i].get("content")
        parts = list(content) if isinstance(content, list) else [self.text_part(str(content or ""))]
        out[i] = {**out[i], "content": parts + [self.media_part(p) for p in media]}
        return out

    def whole(self, opts: RequestOptions) -> bool:
        """True when this run's requests are answered by one JSON body, not a stream: a non-streaming API, or
        ``--no-stream``. Such a request has an E2E and token counts; TTFT, TPOT and ITL are not figures of it."""
        return not self.streams or not opts.stream

    def parse_whole(self, obj: dict[str, Any]) -> Event:
        """Read a whole (not streamed) JSON answer: its output text (for a tokenizer), usage, finish reason,
        or the server's error. Raises :class:`MalformedEvent` for an API that has no whole answer."""
        err = error_text(obj)
        if err is not None:
            return Event(error=err)
        raise MalformedEvent(f"{self.name} reads streams only")

    def request_headers(self, api_key: str) -> dict[str, str]:
        """The headers this API needs: :attr:`fixed_headers`, and the API key in :attr:`auth_header` when
        ``api_key`` is not empty (a secret: :class:`~tokenswarm.settings.Settings` keeps it out of every
        output)."""
        out = dict(self.fixed_headers)
        if api_key:
            out[self.auth_header] = f"{self.auth_scheme} {api_key}" if self.auth_scheme else api_key
        return out

    def key_of(self, value: str) -> str:
        """The API key in a value of :attr:`auth_header` (its scheme removed), "" when the value is not of this
        dialect's scheme (a header the user wrote): the inverse of :meth:`request_headers`, for moving a key
        to another dialect's header."""
        scheme = self.auth_scheme + " " if self.auth_scheme else ""
        if not scheme:
            return value
        return value[len(scheme):] if value.startswith(scheme) else ""

    def cap_field(self, opts: RequestOptions) -> str:
        """The body field that caps the output for this run."""
        return opts.max_tokens_field or self.max_tokens_field

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, str]:
        """What :func:`tokenswarm.dialects.get_dialect` needs besides the name to make this dialect again
        (the settings travel to workers by name and config); nothing for most."""
        return {}

    def stream(self) -> Dialect:
        """A parser for one response. Stateless dialects are their own parser; dialects whose events carry
        cumulative text return a fresh object that remembers what it has seen."""
        return self

    def parse(self, obj: dict[str, Any]) -> Event:
        """Read one decoded JSON event."""
        raise NotImplementedError

    def parse_event(self, ev: SSEEvent) -> Event | None:
        """Read one dispatched server-sent event; None for events that carry nothing (keep-alives).

        ``data: [DONE]`` ends the stream; an event of type ``error`` is the server saying the request
        failed, in its own words (its JSON ``error.message`` or its plain text); any other event's data
        must be a JSON object, read by :meth:`parse`. Raises :class:`MalformedEvent` otherwise.
        """
        data = ev.data
        if ev.event == "error":
            return Event(error=_error_data(data))
        if data == "[DONE]" or data.strip() == "[DONE]":
            return DONE
        if not data or data.isspace():
            return SKIP
        try:
            obj = json.loads(data)
        except ValueError:
            raise MalformedEvent(f"not JSON: {_snippet(data)}") from None
        if not isinstance(obj, dict):
            raise MalformedEvent(f"not a JSON object: {_snippet(data)}")
        return self.parse(obj)


def with_sampling(body: dict[str, Any], opts: RequestOptions) -> dict[str, Any]:
    """``body`` with the fields OpenAI-shaped APIs (chat, completions, Responses, Anthropic Messages) share:
    ``temperature`` when set, ``ignore_eos`` when asked, then ``--extra-body`` (:func:`merge_extra`)."""
    if opts.temperature is not None:
        body["temperature"] = opts.temperature
    if opts.ignore_eos:
        body["ignore_eos"] = True
    if opts.extra_body:
        merge_extra(body, opts.extra_body)
    return body


def merge_extra(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``--extra-body`` merged in, top-level keys replaced; a key whose value is None (JSON
    ``null``) is removed, so a field a server rejects can be left out: ``{"stream_options": null}``."""
    for k, v in extra.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


#: ``finish_reason`` values meaning the engine gave up on the request rather than finished it: vLLM's
#: ``abort`` (aborted in the engine) and ``error`` (its v1 engine's request errors), SGLang's
#: ``{"type": "abort", "message": ...}``. ``stop``, ``length``, ``tool_calls``, ``function_call`` and
#: ``content_filter`` are finished answers. A stream ending with one of these is ``server_error_event``.
FAILED_FINISH = frozenset({"abort", "error"})


def finish_error(finish: Any, detail: Any = None) -> str | None:
    """The failure message when ``finish`` means the engine gave up (see :data:`FAILED_FINISH`), else None."""
    if finish not in FAILED_FINISH:
        return None
    msg = f"the engine gave up (finish_reason {finish!r})"
    return f"{msg}: {detail}" if detail else msg


def error_text(obj: dict[str, Any]) -> str | None:
    """The message of an in-stream error object, in the shapes servers use; None if not an error."""
    err = obj.get("error")
    if err:
        if isinstance(err, dict):
            return str(err.get("message") or err.get("msg") or err)
        return str(err)
    if obj.get("object") == "error":
        return str(obj.get("message") or obj)
    return None


def usage_of(u: Any) -> Usage | None:
    """An OpenAI-style usage object as :class:`Usage` (None if absent or not an object)."""
    if not isinstance(u, dict):
        return None
    details = u.get("completion_tokens_details") or {}
    pdetails = u.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=u.get("prompt_tokens"),
        completion_tokens=u.get("completion_tokens"),
        reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None,
        cached_tokens=pdetails.get("cached_tokens") if isinstance(pdetails, dict) else None,
        total_tokens=u.get("total_tokens"),
    )


class StreamText:
    """The new text of each event, whether events hold a delta or everything so far (cumulative).

    ``mode`` is ``delta``, ``cumulative``, or ``auto``: cumulative once an event repeats all the text
    seen so far and adds to it (decided on the second non-empty event).
    """

    __slots__ = ("seen", "cumulative")

    def __init__(self, mode: str = "auto") -> None:
        self.seen = ""
        self.cumulative: bool | None = {"delta": False, "cumulative": True}.get(mode)

    def take(self, text: str) -> str:
        seen = self.seen
        if self.cumulative is None and seen:
            self.cumulative = len(text) > len(seen) and text.startswith(seen)
        if not self.cumulative:
            self.seen = seen + text
            return text
        self.seen = text
        if text.startswith(seen):
            return text[len(seen):]
        # the server rewrote earlier text (a detokenizer fix-up): what is new starts at the first difference
        i, n = 0, min(len(seen), len(text))
        while i < n and seen[i] == text[i]:
            i += 1
        return text[i:]


class TypedEvents(Dialect):
    """A dialect whose events name their own type in the JSON (``{"type": "message_start", ...}``): an
    ``event: error`` carrying a JSON object is read by :meth:`parse` too, so its failure keeps the API's own
    words (its error type or code beside the message)."""

    def parse_event(self, ev: SSEEvent) -> Event | None:
        if ev.event == "error":
            try:
                obj = json.loads(ev.data)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                out = self.parse(obj)
                if out is not None and out.error is not None:
                    return out
        return Dialect.parse_event(self, ev)


def _snippet(text: str, n: int = 80) -> str:
    return text[:n] + ("..." if len(text) > n else "")


def _error_data(data: str) -> str:
    """The message of an ``event: error`` event: JSON error shapes, else the text itself."""
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        msg = error_text(obj)
        if msg is None:
            msg = str(obj.get("message") or obj.get("detail") or data)
        return msg or "the server sent an error event"
    return " ".join(data.split()) or "the server sent an error event"
