"""What a record of each file dataset means: its prompt, its reference answer, its output length.

One function per layout turns a parsed record into an :class:`Item`, raises
:class:`Skip` with the reason for a record it passes over (a ShareGPT
conversation with fewer than two turns, an empty prompt: counted by reason in
the dataset's counts, run.json ``dataset``), and raises :class:`Bad` with the
field and problem for a record that is wrong; the loader adds the file and
line. The layouts:

* ``sharegpt``: ``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}``;
  the first human turn is the prompt, the turn after it the reference answer. Turns written as
  OpenAI messages (``{"role": "user", "content": ...}``) are read too; a turn with neither form
  makes the record skipped as "turns without from/value or role/content".
* ``openqa`` (HC3 ``open_qa.jsonl``): ``question`` is the prompt, ``human_answers[0]`` the reference.
* ``longalpaca`` (LongAlpaca-12k): ``instruction`` (plus ``input`` when not empty) is the prompt,
  ``output`` the reference.
* ``jsonl`` / ``csv``: the ``--prompt-field`` field (default ``prompt``); an ``output_len`` or
  ``max_tokens`` field, when present, is the prompt's own output length for ``--output-len -1``.

``sharegpt``, ``jsonl`` and ``csv`` records may name image and audio files sent with the prompt
(:data:`MEDIA_FIELDS`: ``image``, ``images``, ``audio``; paths relative to the dataset file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

DEFAULT_PROMPT_FIELD = "prompt"
OUTPUT_LEN_FIELDS = ("output_len", "max_tokens")  # jsonl/csv: a prompt's own output length
_HUMAN = ("human", "user")


class Bad(Exception):
    """A record that cannot be used: the message names the field and the problem (the loader adds where)."""


class Skip(Exception):
    """A record the layout passes over; the message is the reason, counted in the dataset's counts."""


class Item(NamedTuple):
    """One usable record: its number in the file, prompt, reference answer, own output length."""

    n: int
    text: str
    reference: str | None = None
    output_len: int | None = None
    media: tuple[str, ...] = ()  # image and audio files the record names (MEDIA_FIELDS), as written


#: the record fields naming image or audio files sent with the prompt (a path or a list of paths, relative to the
#: dataset file's folder): LLaVA-style ShareGPT's ``image``, and ``images``, ``audio`` in jsonl/csv
MEDIA_FIELDS = ("image", "images", "audio")


def _media(rec: dict[str, Any]) -> tuple[str, ...]:
    """The files ``rec`` names in :data:`MEDIA_FIELDS`, in that order; Bad for a field that is not a path or a
    list of paths."""
    out: list[str] = []
    for field in MEDIA_FIELDS:
        value = rec.get(field)
        if value is None or value == "":
            continue
        paths = value if isinstance(value, list) else [value]
        for k, path in enumerate(paths):
            if not isinstance(path, str) or not path.strip():
                where = f"{field}[{k}]" if isinstance(value, list) else field
                raise Bad(f"'{where}' is {_kind(path)}, not a file path")
            out.append(path.strip())
    return tuple(out)


_KINDS = {dict: "an object", list: "a list", type(None): "null", bool: "a boolean", int: "a number",
          float: "a number", str: "text"}


def _kind(value: Any) -> str:
    """What a JSON value is, in words: ``an object``, ``a number``, ``text``..."""
    return _KINDS.get(type(value), type(value).__name__)


def _text(rec: dict[str, Any], field: str, required: bool = True) -> str | None:
    value = rec.get(field)
    if value is None:
        if required:
            raise Bad(f"no '{field}' field" if field not in rec else f"'{field}' is null, not text")
        return None
    if not isinstance(value, str):
        raise Bad(f"'{field}' is {_kind(value)}, not text")
    return value


def _answer(text: str | None) -> str | None:
    """A reference answer, or None for a missing or blank one (the run's --max-tokens applies then)."""
    return text if text and not text.isspace() else None


def _obj(rec: Any) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise Bad(f"not an object but {_kind(rec)}")
    return rec


def _length(rec: dict[str, Any], field: str) -> int | None:
    value = rec.get(field)
    if value is None or value == "":
        return None
    whole = (isinstance(value, int) and not isinstance(value, bool)
             or isinstance(value, float) and value.is_integer()
             or isinstance(value, str) and value.strip().isdigit())
    n = int(value) if whole else -1
    if n < 1:
        raise Bad(f"bad '{field}' value {value!r} (want a whole number of at least 1)")
    return n


def _turn(turn: dict[str, Any]) -> tuple[Any, str] | None:
    """(speaker, text field) of a conversation turn: ShareGPT's from/value, or OpenAI's role/content."""
    if "from" in turn or "value" in turn:
        return turn.get("from"), "value"
    if "role" in turn or "content" in turn:
        return turn.get("role"), "content"
    return None


def sharegpt(n: int, rec: Any, opts: LayoutOptions) -> Item:
    rec = _obj(rec)
    if "conversations" not in rec:
        raise Bad("no 'conversations' field")
    turns = rec["conversations"]
    if not isinstance(turns, list):
        raise Bad(f"'conversations' is {_kind(turns)}, not a list")
    if len(turns) < 2:
        raise Skip("fewer than 2 turns")
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise Bad(f"conversations[{k}] is {_kind(turn)}, not an object")
        form = _turn(turn)
        if form is None:
            raise Skip("turns without from/value or role/content")
        speaker, field = form
        if speaker in _HUMAN:
            prompt = _text(turn, field)
            if k + 1 >= len(turns):
                raise Skip("no answer after the question")
            answer = turns[k + 1]
            if not isinstance(answer, dict):
                raise Bad(f"conversations[{k + 1}] is {_kind(answer)}, not an object")
            aform = _turn(answer)
            if aform is None:
                raise Skip("turns without from/value or role/content")
            if aform[0] in _HUMAN:
                raise Skip("no answer after the question")
            reference = _answer(_text(answer, aform[1])) if opts.want_reference else None
            if not prompt.strip():
                raise Skip("empty prompt")
            return Item(n, prompt, reference, media=_media(rec))
    raise Skip("no human turn")


def openqa(n: int, rec: Any, opts: LayoutOptions) -> Item:
    rec = _obj(rec)
    question = _text(rec, "question")
    if not question.strip():
        raise Skip("empty prompt")
    reference = None
    if opts.want_reference:
        answers = rec.get("human_answers")
        if answers is not None and not isinstance(answers, list):
            raise Bad(f"'human_answers' is {_kind(answers)}, not a list")
        if answers:
            if not isinstance(answers[0], str):
                raise Bad(f"human_answers[0] is {_kind(answers[0])}, not text")
            reference = _answer(answers[0])
    return Item(n, question, reference)


def longalpaca(n: int, rec: Any, opts: LayoutOptions) -> Item:
    rec = _obj(rec)
    text = _text(rec, "instruction")
    extra = _text(rec, "input", required=False)
    if extra and extra.strip():
        text = f"{text}\n\n{extra}"
    if not text.strip():
        raise Skip("empty prompt")
    reference = _answer(_text(rec, "output", required=False)) if opts.want_reference else None
    return Item(n, text, reference)


def fields(n: int, rec: Any, opts: LayoutOptions) -> Item:
    rec = _obj(rec)
    text = _text(rec, opts.prompt_field)
    if not text.strip():
        raise Skip("empty prompt")
    output_len = None
    if opts.want_reference:
        for field in OUTPUT_LEN_FIELDS:
            output_len = _length(rec, field)
            if output_len is not None:
                break
    return Item(n, text, None, output_len, _media(rec))


class LayoutOptions(NamedTuple):
    """What a layout needs besides the record."""

    prompt_field: str = DEFAULT_PROMPT_FIELD
    want_reference: bool = False  # --output-len -1: keep reference answers and output lengths


Layout = Callable[[int, Any, LayoutOptions], Item]

#: --dataset name -> (layout, reader: "json" for JSON lists or lines, "csv")
LAYOUTS: dict[str, tuple[Layout, str]] = {
    "sharegpt": (sharegpt, "json"),
    "openqa": (openqa, "json"),
    "longalpaca": (longalpaca, "json"),
    "jsonl": (fields, "json"),
    "csv": (fields, "csv"),
}
