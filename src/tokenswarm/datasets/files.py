"""File datasets as endless, sharded prompt sources: load, shard, measure, filter, then cycle in epochs.

:func:`open_file` reads every record of ``--dataset-path`` (so a malformed
file fails the same way on every worker, at open), shuffles the usable ones
once with the run's seed (the same order on every worker), and gives shard
``i`` of ``k`` the items ``i, i+k, i+2k, ...`` of that order: the shards
partition the file. Only the shard's own items are then measured (with the
tokenizer when one is given, else in words by :func:`approx_tokens`, which is
only an approximation of tokens) and filtered by ``--min/--max-prompt-tokens``. When a
shard has gone through its items it starts a new epoch: a fresh order of its
own items with a seed of its own.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tokenswarm.datasets.base import DatasetError, DatasetSpec, Prompt
from tokenswarm.datasets.formats import RecordFile
from tokenswarm.datasets.layouts import (
    DEFAULT_PROMPT_FIELD,
    LAYOUTS,
    OUTPUT_LEN_FIELDS,
    Bad,
    Item,
    LayoutOptions,
    Skip,
)

if TYPE_CHECKING:
    from tokenswarm.tokencount import TokenCounter


def read_items(spec: DatasetSpec) -> tuple[list[Item], int, dict[str, int]]:
    """Every usable record of the file, in file order; how many records it has in all; and the records the
    layout skipped, counted by reason (``{"fewer than 2 turns": 3100, ...}``)."""
    layout, reader = LAYOUTS[spec.name]
    opts = LayoutOptions(spec.prompt_field or DEFAULT_PROMPT_FIELD, spec.output_len == -1)
    file = RecordFile(spec.path)
    records = file.csv_records(opts.prompt_field) if reader == "csv" else file.json_records()
    items: list[Item] = []
    skipped: dict[str, int] = {}
    total = 0
    for n, rec in records:
        total += 1
        try:
            item = layout(n, rec, opts)
        except Skip as e:
            skipped[str(e)] = skipped.get(str(e), 0) + 1
        except Bad as e:
            raise DatasetError(f"{file.where(n)}: {e}")
        else:
            if item.media:
                item = item._replace(media=tuple(_media_path(spec.path, p, file.where(n)) for p in item.media))
            items.append(item)
    return items, total, skipped


def _media_path(dataset: str, path: str, where: str) -> str:
    """A media file a record names, relative to the dataset file's folder; DatasetError when it is not there."""
    full = path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(dataset)), path)
    if not os.path.isfile(full):
        raise DatasetError(f"{where}: no such image or audio file {path!r}")
    return full


def counts_line(info: dict[str, object]) -> str:
    """``sharegpt: 94,145 records read, 90,665 used, 3,480 skipped (fewer than 2 turns 3,100; ...)``."""
    skipped = info.get("skipped") or {}
    assert isinstance(skipped, dict)
    line = f"{info.get('dataset')}: {info.get('records', 0):,} records read, {info.get('usable', 0):,} used"
    if skipped:
        reasons = "; ".join(f"{why} {n:,}" for why, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
        line += f", {sum(skipped.values()):,} skipped ({reasons})"
    return line


# one CJK ideograph, kana or hangul syllable, or a run of other non-space characters
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNITS = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


def approx_tokens(text: str) -> int:
    """Length without a tokenizer: whitespace-separated words, each CJK character counted as one word.

    Equal to the simulated engine's count for space-separated text; for a
    real model only an approximation (English runs ~1.3 tokens per word).
    """
    return len(_UNITS.findall(text))


def _counts(texts: list[str], tokenizer: TokenCounter | None) -> list[int]:
    if tokenizer is not None:
        return tokenizer.count_batch(texts)
    return [approx_tokens(t) for t in texts]


MEASURE_CHUNK = 2048  # prompts tokenized per call: bounds memory (a batch's Encodings) and keeps batches parallel


def _measure(items: list[Item], picks: list[int], spec: DatasetSpec, tokenizer: TokenCounter | None,
             default_max_tokens: int, limit: int = 0) -> list[Prompt]:
    """Prompts for ``items[i] for i in picks`` that pass the length filters, in that order (the first
    ``limit`` of them when ``limit`` > 0)."""
    lo, hi = spec.min_prompt_tokens, spec.max_prompt_tokens
    need_counts = tokenizer is not None or lo > 0 or hi > 0
    prompts: list[Prompt] = []
    for start in range(0, len(picks), MEASURE_CHUNK):
        chosen = [items[i] for i in picks[start:start + MEASURE_CHUNK]]
        counts = _counts([it.text for it in chosen], tokenizer) if need_counts else [0] * len(chosen)
        kept = [(it, c) for it, c in zip(chosen, counts) if c >= lo and (hi <= 0 or c <= hi)]
        if limit:
            kept = kept[:limit - len(prompts)]
        if spec.output_len > 0:
            outs: list[int | None] = [spec.output_len] * len(kept)
        elif spec.output_len == -1:
            ref_counts = _counts([it.reference or "" for it, _ in kept], tokenizer)
            outs = [it.output_len if it.output_len is not None
                    else max(1, rc) if it.reference is not None else default_max_tokens
                    for (it, _), rc in zip(kept, ref_counts)]
        else:
            outs = [None] * len(kept)
        name = spec.name
        prompts += [Prompt(id=f"{name}-{it.n}", text=it.text, input_tokens=c if tokenizer is not None else None,
                           max_tokens=out, media=list(it.media) or None) for (it, c), out in zip(kept, outs)]
        if limit and len(prompts) >= limit:
            break
    return prompts


class FilePrompts:
    """One shard of a file dataset, endless: its prompts in the global order, then a new order each epoch.

    Epoch ``e`` > 0 walks the shard's prompts with a stride permutation (a
    start and a step coprime to the count, seeded by seed, shard and epoch):
    a fresh order at O(1) per prompt, with no reshuffle stalling the worker
    mid-run.
    """

    def __init__(self, prompts: list[Prompt], spec: DatasetSpec, shard: int, info: dict[str, object]) -> None:
        self.prompts = prompts
        self.seed = spec.seed
        self.shard = shard
        self.epoch = 0
        self.info = info
        self._k = 0  # prompts handed out in this epoch
        self._at = 0
        self._step = 1

    def __iter__(self) -> Iterator[Prompt]:
        return self

    def __next__(self) -> Prompt:
        size = len(self.prompts)
        if self._k >= size:
            self.epoch += 1
            self._k = 0
            rng = random.Random(f"tokenswarm-epoch-{self.seed}-{self.shard}-{self.epoch}")
            self._at = rng.randrange(size)
            step = rng.randrange(1, size) if size > 2 else 1
            while math.gcd(step, size) != 1:
                step += 1
            self._step = step
        p = self.prompts[self._at]
        self._at = (self._at + self._step) % size
        self._k += 1
        return Prompt(id=p.id, text=p.text, input_tokens=p.input_tokens, max_tokens=p.max_tokens, media=p.media)

    def prefetch(self, count: int) -> None:
        """Nothing to do: every prompt of the shard was built at open (here for the same API as random)."""

    def describe(self) -> dict[str, object]:
        """What this source is, for run.json."""
        return dict(self.info)


def global_order(count: int, seed: int) -> list[int]:
    """The order every worker agrees on: ``range(count)`` shuffled with the run's seed."""
    order = list(range(count))
    random.Random(f"tokenswarm-dataset-{seed}").shuffle(order)
    return order


def _filters(spec: DatasetSpec) -> str:
    parts = [f"--min-prompt-tokens {spec.min_prompt_tokens}"] if spec.min_prompt_tokens else []
    if spec.max_prompt_tokens > 0:
        parts.append(f"--max-prompt-tokens {spec.max_prompt_tokens}")
    return ", ".join(parts)


def open_file(spec: DatasetSpec, shard: int, shards: int, tokenizer: TokenCounter | None,
              default_max_tokens: int, max_prompts: int = 0) -> FilePrompts:
    """Load, shard, measure and filter ``spec.path``; raises :class:`DatasetError` when nothing usable is left.

    ``max_prompts`` > 0 keeps only the shard's first that many prompts that
    pass the filters (and tokenizes no further): a shorter start on big files.
    """
    items, total, skipped = read_items(spec)
    if not items:
        why = "; ".join(f"{reason} {n}" for reason, n in skipped.items())
        raise DatasetError(f"{spec.path}: no usable prompts ({total} records, all skipped: {why})" if total
                           else f"{spec.path}: no records")
    if spec.output_len == -1 and not any(it.reference is not None or it.output_len is not None for it in items):
        what = ("an 'output_len' or 'max_tokens' field" if spec.name in ("jsonl", "csv") else "a reference answer")
        raise DatasetError(f"bad --output-len -1: no record of {spec.path} has {what} to take the output length from")
    order = global_order(len(items), spec.seed)
    mine = order[shard::shards] or [order[shard % len(order)]]  # more workers than prompts: share some
    prompts = _measure(items, mine, spec, tokenizer, default_max_tokens, max_prompts)
    if not prompts:  # this shard's share was all filtered out: look at the whole file before giving up
        survivors = _measure(items, order, spec, tokenizer, default_max_tokens, shard + 1)
        if not survivors:
            raise DatasetError(f"no prompts left after the length filters ({_filters(spec)}) in {spec.path} "
                               f"({len(items)} prompts, counted in "
                               f"{'tokens' if tokenizer is not None else 'words: give --tokenizer for tokens'})")
        prompts = [survivors[shard % len(survivors)]]
    info: dict[str, object] = {
        "dataset": spec.name, "path": spec.path, "records": total, "usable": len(items), "skipped": skipped,
        "shard": shard, "shards": shards, "shard_prompts": len(prompts),
        "counted_with": tokenizer.path if tokenizer is not None else "words",
        "output_len": spec.output_len,
    }
    if spec.name in ("jsonl", "csv"):
        info["prompt_field"] = spec.prompt_field or DEFAULT_PROMPT_FIELD
        if spec.output_len == -1:
            info["output_len_fields"] = list(OUTPUT_LEN_FIELDS)
    return FilePrompts(prompts, spec, shard, info)
