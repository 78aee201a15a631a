"""The shared vocabulary of the datasets package: what a prompt is, what was asked for, and the one error.

:class:`Prompt` is one request's input; :class:`DatasetSpec` carries
``--dataset``, ``--dataset-path`` and the length options; :class:`DatasetError`
is the one-line error every dataset raises (naming the file, line or record,
field and value). The other modules of the package import these from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenswarm.errors import SettingsError

#: every --dataset name, in the order the help lists them
DATASETS: tuple[str, ...] = ("random", "sharegpt", "openqa", "longalpaca", "jsonl", "csv")
#: the datasets read from --dataset-path
FILE_DATASETS: tuple[str, ...] = DATASETS[1:]


class DatasetError(SettingsError):
    """A dataset that cannot be used: names the file (and line or record) and what is wrong."""


@dataclass
class DatasetSpec:
    """What ``--dataset``, ``--dataset-path`` and the length options asked for."""

    name: str = "random"
    path: str = ""
    input_len: int = 128
    output_len: int = 0  # random: 0 means the run's --max-tokens; file datasets: -1 = reference answer length
    range_ratio: float = 0.0
    prompt_field: str = ""  # jsonl/csv; "" means "prompt"
    min_prompt_tokens: int = 0
    max_prompt_tokens: int = 0  # 0: no limit
    seed: int = 0


@dataclass(slots=True)
class Prompt:
    """One request's input. ``input_tokens`` is its length when known locally."""

    id: str
    text: str
    input_tokens: int | None = None
    max_tokens: int | None = None  # per-prompt output length; None: the run's --max-tokens
    messages: list[dict[str, Any]] | None = None  # chat history; None: one user message of ``text``
    prefix_id: str = ""  # which shared prefix it starts with (--prefix-len)
    conversation_id: str = ""  # multi-turn: its conversation ...
    turn: int = 0  # ... and turn (1-based)
    #: a batched request's inputs, this prompt's text first (embeddings' ``input``, rerank's documents); None: one
    batch: list[str] | None = None
    #: images and audio sent with the last user message (:class:`tokenswarm.media.MediaPart`s); None: none
    media: list[Any] | None = None
