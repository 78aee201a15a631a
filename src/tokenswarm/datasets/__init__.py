"""Prompts and where they come from: the ``--dataset`` options, checked and opened.

A :class:`Prompt` is what one request sends; a prompt source yields them
forever (``next()``), sharded by worker index so that workers of one run do
not send the same sequence. :func:`validate_spec` checks a
:class:`DatasetSpec` (from ``--dataset`` and friends) cheaply, without reading
the file; :func:`open_dataset` loads it into such a source: ``random``
(:mod:`.synthetic`) or a file dataset (:mod:`.files`, reading with
:mod:`.formats` and interpreting records with :mod:`.layouts`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tokenswarm.datasets.base import DATASETS, FILE_DATASETS, DatasetError, DatasetSpec, Prompt
from tokenswarm.datasets.files import FilePrompts, open_file
from tokenswarm.datasets.synthetic import RandomPrompts

if TYPE_CHECKING:
    from tokenswarm.tokencount import TokenCounter

__all__ = [
    "DATASETS", "FILE_DATASETS", "DatasetError", "DatasetSpec", "FilePrompts", "Prompt", "RandomPrompts",
    "open_dataset", "validate_spec",
]

_FIELD_DATASETS = ("jsonl", "csv")


def validate_spec(spec: DatasetSpec) -> None:
    """Check ``spec`` without reading the file; raise :class:`DatasetError` naming the option and value.

    Checks: a known ``--dataset``; for file datasets a ``--dataset-path`` that
    exists and is a readable file, and none for ``random``; ``--range-ratio`` in
    [0, 1); ``--min/--max-prompt-tokens`` >= 0 and min <= max when max > 0;
    ``--input-len`` >= 1; ``--output-len`` >= -1, with -1 for file datasets only;
    ``--prompt-field`` for jsonl/csv only.
    """
    name = spec.name
    if name not in DATASETS:
        raise DatasetError(f"bad --dataset '{name}': pick one of {', '.join(DATASETS)}")
    if spec.input_len < 1:
        raise DatasetError(f"bad --input-len {spec.input_len}: must be at least 1")
    if spec.output_len < -1:
        raise DatasetError(f"bad --output-len {spec.output_len}: must be 0 (the run's --max-tokens), a length, or "
                           "-1 (file datasets: each prompt's reference answer length)")
    if not 0 <= spec.range_ratio < 1:
        raise DatasetError(f"bad --range-ratio {spec.range_ratio:g}: must be at least 0 and below 1")
    if spec.min_prompt_tokens < 0:
        raise DatasetError(f"bad --min-prompt-tokens {spec.min_prompt_tokens}: must be 0 or more")
    if spec.max_prompt_tokens < 0:
        raise DatasetError(f"bad --max-prompt-tokens {spec.max_prompt_tokens}: must be 0 (no limit) or more")
    if 0 < spec.max_prompt_tokens < spec.min_prompt_tokens:
        raise DatasetError(f"bad --min-prompt-tokens {spec.min_prompt_tokens}: more than --max-prompt-tokens "
                           f"{spec.max_prompt_tokens}")
    if spec.prompt_field and name not in _FIELD_DATASETS:
        raise DatasetError(f"bad --prompt-field '{spec.prompt_field}': only --dataset jsonl or csv takes it "
                           f"(--dataset {name} has its own layout)")
    if name == "random":
        if spec.output_len == -1:
            raise DatasetError("bad --output-len -1: reference answer lengths need a file dataset; "
                               "--dataset random takes 0 (the run's --max-tokens) or a length")
        if spec.path:
            raise DatasetError(f"bad --dataset-path '{spec.path}': --dataset random reads no file "
                               f"(pick --dataset {', '.join(FILE_DATASETS)})")
        return
    if not spec.path:
        raise DatasetError(f"bad --dataset-path '': --dataset {name} needs a file")
    path = os.path.expanduser(spec.path)
    if not os.path.exists(path):
        raise DatasetError(f"bad --dataset-path '{spec.path}': no such file")
    if os.path.isdir(path):
        raise DatasetError(f"bad --dataset-path '{spec.path}': a folder, not a file")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"bad --dataset-path '{spec.path}': cannot be read (permission denied)")


def open_dataset(spec: DatasetSpec, shard: int = 0, shards: int = 1, tokenizer: TokenCounter | None = None,
                 default_max_tokens: int = 128, *, max_prompts: int = 0) -> Iterator[Prompt]:
    """An endless iterator of prompts for worker ``shard`` of ``shards``.

    ``random``: :class:`RandomPrompts` seeded per shard, ``input_len`` tokens
    exactly with a tokenizer (words without one). File datasets: the whole
    file is read and checked here, so a malformed file, a missing field or
    "no prompts left after the length filters" raises :class:`DatasetError`
    now, never mid-run. ``default_max_tokens`` (the run's ``--max-tokens``) is
    the output length of records that have no reference under ``--output-len -1``.
    ``max_prompts`` > 0 keeps only a shard's first that many prompts (after the
    filters), so a big file is tokenized no further than a run needs.
    Both sources have ``describe() -> dict`` for run.json.
    """
    validate_spec(spec)
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: want 0 <= shard < shards")
    if spec.name == "random":
        return RandomPrompts(spec.input_len, spec.seed, shard, output_len=spec.output_len,
                             range_ratio=spec.range_ratio, tokenizer=tokenizer)
    if max_prompts < 0:
        raise ValueError(f"max_prompts {max_prompts}: want 0 (all) or more")
    return open_file(spec, shard, shards, tokenizer, default_max_tokens, max_prompts)
