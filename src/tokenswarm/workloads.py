"""Real-world workloads: shared prompt prefixes, multi-turn conversations, and trace replay.

* :class:`SharedPrefixes` wraps a prompt source: every prompt becomes one of
  ``--num-prefixes`` shared prefixes of ``--prefix-len`` tokens (a system
  prompt, in chat) followed by the source's unique prompt. The prefixes are
  built from the run's seed alone, so every worker shares them (as a prefix
  cache would see them); each prompt records which one it got.
* :class:`Conversations` hands each user a conversation of ``--turns`` turns
  (synthetic user turns of ``--turn-input-len`` tokens, or the human turns of
  ShareGPT-style conversations); each turn sends the whole history, the model's
  own earlier answers included, and records the conversation id and turn.
* :func:`load_trace` reads an arrival trace (timestamps with input and output
  lengths: a plain JSONL layout, Mooncake's, or BurstGPT's CSV) for open-loop
  replay at ``--trace-speed``; Mooncake's ``hash_ids`` become shared prompt
  blocks, so a prefix cache sees the trace's own sharing.

Pure: no locust, no gevent. Lengths are exact tokens with a tokenizer and
words without one (what the simulated engine counts).
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenswarm.datasets import DatasetError, Prompt, RandomPrompts
from tokenswarm.datasets.formats import RecordFile
from tokenswarm.textgen import VOCAB

if TYPE_CHECKING:
    from tokenswarm.tokencount import TokenCounter

SEPARATOR = "\n\n"  # between a shared prefix and the rest, in completion prompts
TRACE_BLOCK_TOKENS = 512  # Mooncake traces hash their prompts in blocks of this many tokens


def _count(text: str, tokenizer: TokenCounter | None) -> int:
    return tokenizer.count(text) if tokenizer is not None else len(text.split())


class SharedPrefixes:
    """Prompts that each start with one of ``num_prefixes`` shared prefixes of ``prefix_len`` tokens."""

    def __init__(self, base: Iterator[Prompt], prefix_len: int, num_prefixes: int, seed: int = 0, shard: int = 0,
                 tokenizer: TokenCounter | None = None) -> None:
        if prefix_len < 1 or num_prefixes < 1:
            raise DatasetError(f"bad --prefix-len {prefix_len} / --num-prefixes {num_prefixes}: both must be "
                               "at least 1")
        self.base = base
        # shard 0 of a seed of its own: the same prefixes on every worker
        source = RandomPrompts(prefix_len, seed=seed + 7_777_777, shard=0, tokenizer=tokenizer)
        self.prefixes = [next(source).text for _ in range(num_prefixes)]
        self.prefix_tokens = [_count(p, tokenizer) for p in self.prefixes]
        self.rng = random.Random(f"tokenswarm-prefix-{seed}-{shard}")
        self.tokenizer = tokenizer

    def __iter__(self) -> Iterator[Prompt]:
        return self

    def __next__(self) -> Prompt:
        p = next(self.base)
        k = self.rng.randrange(len(self.prefixes))
        prefix = self.prefixes[k]
        tokens = None
        if p.input_tokens is not None:
            tokens = self.prefix_tokens[k] + p.input_tokens
        return Prompt(id=p.id, text=prefix + SEPARATOR + p.text, input_tokens=tokens, max_tokens=p.max_tokens,
                      messages=[{"role": "system", "content": prefix}, {"role": "user", "content": p.text}],
                      prefix_id=f"prefix-{k}")

    def prefetch(self, count: int) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"shared_prefixes": len(self.prefixes), "prefix_tokens": self.prefix_tokens[0]}


# -- multi-turn ------------------------------------------------------------------------------
@dataclass
class Conversation:
    """One conversation: its user turns, and the history so far (the model's answers included)."""

    id: str
    user_turns: list[str]
    history: list[dict[str, str]] = field(default_factory=list)
    turn: int = 0  # turns sent so far

    @property
    def done(self) -> bool:
        return self.turn >= len(self.user_turns)

    def next_prompt(self, tokenizer: TokenCounter | None = None) -> Prompt:
        """The next turn: the whole history plus the next user message."""
        text = self.user_turns[self.turn]
        messages = [*self.history, {"role": "user", "content": text}]
        tokens = sum(_count(m["content"], tokenizer) for m in messages)
        self.turn += 1
        return Prompt(id=f"{self.id}-t{self.turn}", text="\n".join(m["content"] for m in messages),
                      input_tokens=tokens, messages=messages, conversation_id=self.id, turn=self.turn)

    def add_reply(self, user_text: str, reply: str) -> None:
        """The turn's exchange joins the history (the model's own answer, as the next turn would send it)."""
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]


class Conversations:
    """Conversations for users: synthetic (``turns`` x ``turn_input_len``) or from ShareGPT-style human turns."""

    def __init__(self, turns: int, turn_input_len: int, seed: int = 0, shard: int = 0,
                 tokenizer: TokenCounter | None = None, sharegpt_path: str = "", shards: int = 1) -> None:
        if turns < 1:
            raise DatasetError(f"bad --turns {turns}: must be at least 1")
        self.turns = turns
        self.shard = shard
        self.count = 0
        self.tokenizer = tokenizer
        self._words = RandomPrompts(max(1, turn_input_len), seed=seed, shard=shard, tokenizer=tokenizer)
        self._file: list[list[str]] = load_conversations(sharegpt_path)[shard::shards] if sharegpt_path else []
        if sharegpt_path and not self._file:
            raise DatasetError(f"{sharegpt_path}: no conversation with two or more human turns for worker {shard}")
        self._rng = random.Random(f"tokenswarm-conv-{seed}-{shard}")

    def new(self) -> Conversation:
        self.count += 1
        cid = f"c{self.shard}-{self.count}"
        if self._file:
            turns = self._file[(self.count - 1) % len(self._file)][: self.turns]
        else:
            turns = [next(self._words).text for _ in range(self.turns)]
        return Conversation(cid, turns)

    def describe(self) -> dict[str, object]:
        return {"workload": "multi-turn", "turns": self.turns, "from_file": bool(self._file)}


def load_conversations(path: str) -> list[list[str]]:
    """The human turns of each ShareGPT-style conversation with at least two of them."""
    if not os.path.isfile(path):
        raise DatasetError(f"bad --dataset-path {path!r}: no such file")
    rf = RecordFile(path)
    out = []
    for n, rec in rf.json_records():
        if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
            raise rf.error(f"{rf.where(n)}: no 'conversations' list")
        human = [str(t.get("value", "")) for t in rec["conversations"]
                 if isinstance(t, dict) and t.get("from") in ("human", "user") and str(t.get("value", "")).strip()]
        if len(human) >= 2:
            out.append(human)
    return out


# -- trace replay ------------------------------------------------------------------------------
@dataclass
class TraceEntry:
    """One arrival of a trace: seconds after the trace's first, lengths, and Mooncake's block hashes."""

    offset_s: float
    input_len: int
    output_len: int
    hash_ids: list[int] = field(default_factory=list)


TRACE_LAYOUTS = ("plain", "mooncake", "burstgpt")


def load_trace(path: str, speed: float = 1.0) -> list[TraceEntry]:
    """Read a trace; offsets are divided by ``speed``. Layouts (detected from the fields):

    * plain JSONL: ``{"timestamp": seconds, "input_len": N, "output_len": N}``
    * Mooncake JSONL: ``{"timestamp": milliseconds, "input_length": N, "output_length": N, "hash_ids": [...]}``
    * BurstGPT CSV: ``Timestamp`` (seconds), ``Request tokens``, ``Response tokens`` (rows with 0 response
      tokens, failures in BurstGPT, are skipped)
    """
    if speed <= 0:
        raise DatasetError(f"bad --trace-speed {speed:g}: must be more than zero")
    if not os.path.isfile(path):
        raise DatasetError(f"bad --trace {path!r}: no such file")
    entries: list[tuple[float, int, int, list[int]]] = []
    if path.endswith((".csv", ".tsv")):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.endswith(".tsv") else ",")
            need = ("Timestamp", "Request tokens", "Response tokens")
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}:1: not a BurstGPT trace: no column {missing[0]!r} "
                                   f"(columns: {', '.join(reader.fieldnames or [])})")
            for line, row in enumerate(reader, start=2):
                try:
                    t, n_in, n_out = float(row["Timestamp"]), int(row["Request tokens"]), int(row["Response tokens"])
                except (TypeError, ValueError):
                    raise DatasetError(f"{path}:{line}: Timestamp, Request tokens and Response tokens must be "
                                       "numbers") from None
                if n_out > 0 and n_in > 0:
                    entries.append((t, n_in, n_out, []))
    else:
        with open(path, encoding="utf-8") as fh:
            for line, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError as e:
                    raise DatasetError(f"{path}:{line}: not JSON ({e})") from None
                entries.append(_trace_record(path, line, rec))
    if not entries:
        raise DatasetError(f"{path}: the trace has no requests")
    entries.sort(key=lambda e: e[0])
    t0 = entries[0][0]
    return [TraceEntry((t - t0) / speed, n_in, n_out, hashes) for t, n_in, n_out, hashes in entries]


def _trace_record(path: str, line: int, rec: Any) -> tuple[float, int, int, list[int]]:
    if not isinstance(rec, dict):
        raise DatasetError(f"{path}:{line}: not a JSON object")
    try:
        if "input_length" in rec:  # Mooncake: milliseconds
            t = float(rec["timestamp"]) / 1000.0
            n_in, n_out = int(rec["input_length"]), int(rec["output_length"])
            hashes = [int(h) for h in rec.get("hash_ids") or []]
        else:
            t = float(rec["timestamp"])
            n_in, n_out = int(rec["input_len"]), int(rec["output_len"])
            hashes = []
    except KeyError as e:
        raise DatasetError(f"{path}:{line}: no {e.args[0]!r} field (plain traces have timestamp, input_len, "
                           "output_len; Mooncake's timestamp, input_length, output_length)") from None
    except (TypeError, ValueError):
        raise DatasetError(f"{path}:{line}: timestamp and lengths must be numbers") from None
    if n_in < 1 or n_out < 1:
        raise DatasetError(f"{path}:{line}: lengths must be at least 1")
    return t, n_in, n_out, hashes


class TracePrompts:
    """Prompts for trace entries: ``input_len`` tokens (words without a tokenizer); Mooncake block hashes map
    to shared blocks of text, so requests that share hash ids share a prompt prefix."""

    def __init__(self, seed: int = 0, tokenizer: TokenCounter | None = None) -> None:
        self.seed = seed
        self.tokenizer = tokenizer
        self._blocks: dict[int, list[str]] = {}
        self._fill = random.Random(f"tokenswarm-trace-{seed}")
        self.count = 0

    def _block(self, h: int) -> list[str]:
        words = self._blocks.get(h)
        if words is None:
            rng = random.Random(f"tokenswarm-block-{self.seed}-{h}")
            words = self._blocks[h] = rng.choices(VOCAB, k=TRACE_BLOCK_TOKENS)
        return words

    def prompt(self, entry: TraceEntry, shard: int = 0) -> Prompt:
        self.count += 1
        words: list[str] = []
        for h in entry.hash_ids:
            words += self._block(h)
            if len(words) >= entry.input_len:
                break
        if len(words) < entry.input_len:
            words += self._fill.choices(VOCAB, k=entry.input_len - len(words))
        text = " ".join(words[: entry.input_len])
        return Prompt(id=f"trace{shard}-{self.count}", text=text, input_tokens=_count(text, self.tokenizer),
                      max_tokens=entry.output_len)
