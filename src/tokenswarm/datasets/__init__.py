"""Prompts and where they come from.

A :class:`Prompt` is what one request sends; a prompt source yields them
forever (``next()``), sharded by worker index so that workers of one run do
not send the same sequence. ``random`` builds synthetic prompts of a given
length; file datasets come with the engines issue.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tokenswarm.textgen import VOCAB


@dataclass(slots=True)
class Prompt:
    """One request's input. ``input_tokens`` is its length when known locally."""

    id: str
    text: str
    input_tokens: int | None = None
    max_tokens: int | None = None  # per-prompt output length; None: the run's --max-tokens
    messages: list[dict[str, Any]] | None = None  # chat history; None: one user message of ``text``


class RandomPrompts:
    """Synthetic prompts of ``input_len`` words drawn from a fixed vocabulary.

    Each prompt opens with words unique to it, so no prefix cache can serve it
    whole. Without a tokenizer the length is counted in words, which is what
    the simulated engine counts as tokens.
    """

    def __init__(self, input_len: int, seed: int = 0, shard: int = 0) -> None:
        if input_len < 1:
            raise ValueError(f"--input-len must be at least 1, got {input_len}")
        self.input_len = input_len
        self.shard = shard
        self.rng = random.Random(seed * 1_000_003 + shard)
        self.count = 0

    def __iter__(self) -> Iterator[Prompt]:
        return self

    def __next__(self) -> Prompt:
        self.count += 1
        words = self.rng.choices(VOCAB, k=self.input_len)
        return Prompt(id=f"r{self.shard}-{self.count}", text=" ".join(words), input_tokens=self.input_len)
