"""Engine-native streaming APIs: SGLang ``/generate``, TGI ``/generate_stream``, Triton ``generate_stream``.

* ``sglang-generate``: ``data: {"text": <cumulative text>, "meta_info": {"id", "prompt_tokens",
  "completion_tokens", "finish_reason": null | {...}}}`` then ``data: [DONE]``. The delta is the new suffix;
  ``completion_tokens`` is a running count (so multi-token events split their ITL gap); a
  ``finish_reason`` of type ``abort`` (with its ``message``) is the engine giving up: a failure.
* ``tgi-generate-stream``: ``data:{"index", "token": {"id", "text", "logprob", "special"},
  "generated_text": null, "details": null}``; the last event carries ``generated_text`` and
  ``details.generated_tokens`` and ends the stream (no ``[DONE]``). Special tokens have empty text but are
  generated tokens: they count through ``index``.
* ``triton-generate-stream`` (TensorRT-LLM ensembles, Triton's vLLM backend): ``data: {"model_name",
  "model_version", "text_output"}``; no ``[DONE]``, no usage (count with ``--tokenizer``); the text is a
  delta or cumulative depending on the model's config, detected from the stream itself; an
  ``{"error": ...}`` object can arrive mid-stream with HTTP 200.
"""

from __future__ import annotations

from typing import Any

from tokenswarm.dialects.base import Dialect, RequestOptions, StreamText, error_text, finish_error, merge_extra
from tokenswarm.measure import Event, Usage


def _sampling(opts: RequestOptions, prompt: Any) -> dict[str, Any]:
    params: dict[str, Any] = {opts.max_tokens_field or "max_new_tokens": prompt.max_tokens or opts.max_tokens}
    if opts.temperature is not None:
        params["temperature"] = opts.temperature
    if opts.ignore_eos:
        params["ignore_eos"] = True
    return params


class _Native(Dialect):
    """A native dialect: its body is :meth:`fields` with ``--extra-body`` merged in; each stream is read by a
    fresh :attr:`reader` (it keeps the stream's state: cumulative text, token count)."""

    reader: type[Dialect]

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        return merge_extra(self.fields(prompt, opts), opts.extra_body)

    def fields(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self) -> Dialect:
        return self.reader()


class _Stream(Dialect):
    """One stream's reader of a native dialect: an error object is a failure in the server's own words
    (:func:`~tokenswarm.dialects.base.error_text`); anything else is the dialect's :meth:`read`."""

    def parse(self, obj: dict[str, Any]) -> Event:
        err = error_text(obj)
        if err is not None:
            return Event(error=err)
        return self.read(obj)

    def read(self, obj: dict[str, Any]) -> Event:
        raise NotImplementedError


class SGLangGenerate(_Native):
    """SGLang's native ``POST /generate`` with ``stream: true``."""

    name = "sglang-generate"
    path = "/generate"
    max_tokens_field = "max_new_tokens"  # in sampling_params
    tokens_from = "meta_info.completion_tokens (a running count on every event)"

    def fields(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        return {"text": prompt.text, "sampling_params": _sampling(opts, prompt), "stream": True}


class _SGLangStream(_Stream, SGLangGenerate):
    def __init__(self) -> None:
        self.text = StreamText("cumulative")

    def read(self, obj: dict[str, Any]) -> Event:
        text = obj.get("text")
        delta = self.text.take(text) if isinstance(text, str) else ""
        meta = obj.get("meta_info") or {}
        finish = meta.get("finish_reason")
        detail = None
        if isinstance(finish, dict):
            detail = finish.get("message")
            finish = finish.get("type") or "stop"
        ctok = meta.get("completion_tokens")
        usage = Usage(prompt_tokens=meta.get("prompt_tokens"), completion_tokens=ctok,
                      cached_tokens=meta.get("cached_tokens")) if meta else None
        return Event(text=delta, usage=usage, finish=finish, response_id=meta.get("id"),
                     tokens=ctok if isinstance(ctok, int) else None, error=finish_error(finish, detail))


class TGIGenerateStream(_Native):
    """Text Generation Inference ``POST /generate_stream`` (one token per event)."""

    name = "tgi-generate-stream"
    path = "/generate_stream"
    max_tokens_field = "max_new_tokens"  # in parameters
    tokens_from = "the token index on every event; details.generated_tokens on the last"

    def fields(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        params: dict[str, Any] = {self.cap_field(opts): prompt.max_tokens or opts.max_tokens, "details": True}
        if opts.temperature:  # TGI rejects temperature 0; greedy is its default
            params["temperature"] = opts.temperature
        if opts.ignore_eos:
            params["stop"] = []
        return {"inputs": prompt.text, "parameters": params, "stream": True}


class _TGIStream(_Stream, TGIGenerateStream):
    def __init__(self) -> None:
        self.count = 0

    def read(self, obj: dict[str, Any]) -> Event:
        token = obj.get("token")
        text = ""
        if isinstance(token, dict):
            self.count = obj.get("index") or self.count + 1
            text = "" if token.get("special") else token.get("text") or ""
        details = obj.get("details")
        final = obj.get("generated_text") is not None
        usage = None
        finish = None
        if isinstance(details, dict):
            usage = Usage(completion_tokens=details.get("generated_tokens"))
            finish = details.get("finish_reason")
        return Event(text=text, usage=usage, finish=finish, done=final,
                     tokens=self.count if isinstance(token, dict) else None)


class TritonGenerateStream(_Native):
    """Triton's ``POST /v2/models/{model}/generate_stream`` (TensorRT-LLM ensemble inputs)."""

    name = "triton-generate-stream"
    path = "/v2/models/{model}/generate_stream"
    needs_end_marker = False  # the stream simply ends
    tokens_from = "no usage: --tokenizer, else output events"
    sends_finish = False  # nor says it finished

    def fields(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        body: dict[str, Any] = {"text_input": prompt.text, self.cap_field(opts): prompt.max_tokens or opts.max_tokens,
                                "stream": True, "bad_words": "", "stop_words": ""}
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        if opts.ignore_eos:
            body["end_id"] = -1
        return body


class _TritonStream(_Stream, TritonGenerateStream):
    """Delta or cumulative ``text_output``, detected from the stream."""

    def __init__(self) -> None:
        self.text = StreamText("auto")

    def read(self, obj: dict[str, Any]) -> Event:
        text = obj.get("text_output")
        if not isinstance(text, str) or not text:
            return Event()
        return Event(text=self.text.take(text))


SGLangGenerate.reader = _SGLangStream
TGIGenerateStream.reader = _TGIStream
TritonGenerateStream.reader = _TritonStream
