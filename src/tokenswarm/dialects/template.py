"""The ``template`` dialect: any JSON-over-SSE streaming API, described by options.

For custom servers (a Triton ensemble with other tensor names, an in-house
gateway): ``--body-template`` is the JSON request body with placeholders
``"{prompt}"``, ``{max_tokens}`` and ``"{model}"``; ``--text-path`` is where each
event holds its text (dots and list indices: ``outputs.0.text``);
``--text-mode`` says whether that text is a ``delta``, ``cumulative``, or
``auto`` (detected from the stream). The stream ends when the response ends
(or at ``data: [DONE]``); an ``{"error": ...}`` event is a failure.
"""

from __future__ import annotations

import json
from typing import Any

from tokenswarm.dialects.base import Dialect, RequestOptions, StreamText, error_text, merge_extra
from tokenswarm.errors import SettingsError
from tokenswarm.measure import Event

TEXT_MODES = ("auto", "delta", "cumulative")


def _path(text_path: str) -> list[str | int]:
    parts: list[str | int] = []
    for p in text_path.split("."):
        if not p:
            raise SettingsError(f"bad --text-path {text_path!r}: empty part")
        parts.append(int(p) if p.isdigit() else p)
    return parts


def _walk(obj: Any, path: list[str | int]) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or key >= len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[key] if isinstance(key, int) else obj.get(key)
    return obj


class Template(Dialect):
    """A request body template and a path to each event's text."""

    name = "template"
    path = "/generate_stream"
    needs_end_marker = False
    tokens_from = "no usage: --tokenizer, else output events"
    sends_finish = False

    def __init__(self, body_template: str = "", text_path: str = "", text_mode: str = "auto") -> None:
        if not body_template:
            raise SettingsError("the template dialect needs --body-template (JSON with a \"{prompt}\" placeholder)")
        if "{prompt}" not in body_template:
            raise SettingsError("bad --body-template: it has no {prompt} placeholder")
        if not text_path:
            raise SettingsError("the template dialect needs --text-path (where each event holds its text)")
        if text_mode not in TEXT_MODES:
            raise SettingsError(f"bad --text-mode {text_mode!r}: choose one of {', '.join(TEXT_MODES)}")
        self.template = body_template
        self._config = {"body_template": body_template, "text_path": text_path, "text_mode": text_mode}
        self.text_path = _path(text_path)
        self.text_mode = text_mode
        try:
            sample = json.loads(self._render("x", 1, "m"))
        except ValueError as e:
            raise SettingsError(f"bad --body-template: not JSON once filled in ({e})") from None
        if not isinstance(sample, dict):
            raise SettingsError("bad --body-template: must be a JSON object")

    def config(self) -> dict[str, str]:
        return dict(self._config)

    def _render(self, prompt: str, max_tokens: int, model: str) -> str:
        out = self.template.replace('"{prompt}"', json.dumps(prompt)).replace('"{model}"', json.dumps(model))
        out = out.replace("{prompt}", json.dumps(prompt)[1:-1]).replace("{model}", json.dumps(model)[1:-1])
        return out.replace("{max_tokens}", str(int(max_tokens)))

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        body = json.loads(self._render(prompt.text, prompt.max_tokens or opts.max_tokens, opts.model))
        return merge_extra(body, opts.extra_body)

    def stream(self) -> Dialect:
        return _TemplateStream(self)


class _TemplateStream(Dialect):
    needs_end_marker = False
    sends_finish = False

    def __init__(self, t: Template) -> None:
        self.t = t
        self.text = StreamText(t.text_mode)

    def parse(self, obj: dict[str, Any]) -> Event:
        err = error_text(obj)
        if err is not None:
            return Event(error=err)
        text = _walk(obj, self.t.text_path)
        if not isinstance(text, str) or not text:
            return Event()
        return Event(text=self.text.take(text))
