"""The ``random`` dataset: synthetic prompts of an exactly known length, different from their first token.

Without a tokenizer a prompt is ``n`` words of :data:`tokenswarm.textgen.VOCAB`
(the simulated engine counts one token per word, so the length is exact
there). With a tokenizer a prompt is joined from the texts of random
word-start tokens of its vocabulary (:func:`token_pool`) and encoded once to
check that ``tokenizer.count(text) == n``; where the round trip changed the
count, it is repaired (re-encoded, cut or padded with fresh tokens, measured
again) until exact. vLLM's random dataset does one truncate-or-pad pass,
which leaves some prompts a token or two off. Lengths are drawn as vLLM draws
them: uniformly in ``[floor(len*(1-r)), ceil(len*(1+r))]``, at least 1. Every
prompt's first token comes from a per-shard stride through the pool, so a
worker's prompts do not share their opening token (until the pool is used up)
and a prefix cache cannot serve any of them whole.
"""

from __future__ import annotations

import math
import random
import weakref
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from tokenswarm.datasets.base import DatasetError, Prompt
from tokenswarm.textgen import VOCAB

if TYPE_CHECKING:
    from tokenswarm.tokencount import TokenCounter

MAX_REPAIRS = 24  # decode/encode repair rounds for one prompt before starting it over
MAX_RESTARTS = 8  # fresh starts for one prompt before giving up
_EPS = 1e-9  # keeps 100 * 1.1 from rounding up to 111


def length_range(n: int, ratio: float) -> tuple[int, int]:
    """The inclusive range lengths are drawn from: ``[floor(n*(1-r)), ceil(n*(1+r))]``, at least 1."""
    lo = max(1, math.floor(n * (1 - ratio) + _EPS))
    hi = max(lo, math.ceil(n * (1 + ratio) - _EPS))
    return lo, hi


class _Stride:
    """Visits every index of ``range(size)`` once per cycle, from a random start with a random coprime step."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.next = rng.randrange(size)
        step = rng.randrange(1, size) if size > 1 else 1
        while math.gcd(step, size) != 1:
            step += 1
        self.step = step

    def __call__(self) -> int:
        i = self.next
        self.next = (i + self.step) % self.size
        return i


class TokenPool(NamedTuple):
    """The tokens random prompts are made of, and the text each adds after another token."""

    ids: list[int]
    pieces: list[str] | None  # text each adds after another token; None: too few word-start tokens, decode ids
    heads: list[str] | None  # text each is as a prompt's first token


MIN_WORD_TOKENS = 64  # fewer word-start tokens than this: build from all plain tokens via decode
_POOLS: weakref.WeakKeyDictionary[TokenCounter, TokenPool] = weakref.WeakKeyDictionary()


def token_pool(tokenizer: TokenCounter) -> TokenPool:
    """The tokenizer's plain word-start tokens, found once (two or three batch calls) and cached.

    Plain: printable text (no byte fragments, no control characters, not only
    spaces, not an added or special token) that encodes back to that very
    token. Word-start: after another token it decodes with a space in between
    (``Ġfoo``, ``▁foo``, a WordPiece token without ``##``), so a prompt is the
    plain join of their texts, starts a new pre-token at every token, and
    re-encodes to the same count almost always: one encode verifies it.
    About 0.3 s for a 32k vocabulary on this 2-core machine.
    """
    pool = _POOLS.get(tokenizer)
    if pool is None:
        candidates = [i for i in range(tokenizer.vocab_size) if i not in tokenizer.added_ids]
        texts = tokenizer.decode_batch([[i] for i in candidates])
        printable = [(i, s) for i, s in zip(candidates, texts) if s.strip() and "\ufffd" not in s and s.isprintable()]
        encoded = tokenizer.encode_batch([s for _, s in printable])
        alone = {i: s for (i, s), enc in zip(printable, encoded) if enc == [i]}
        plain = list(alone)
        if not plain:
            raise DatasetError(f"--tokenizer '{tokenizer.path}': no token of its vocabulary is plain text that "
                               "encodes back to itself; cannot build random prompts with it")
        head = tokenizer.decode([plain[0]])
        after = tokenizer.decode_batch([[plain[0], i] for i in plain])
        words = [(i, s[len(head):]) for i, s in zip(plain, after) if s.startswith(head + " ")]
        if len(words) >= MIN_WORD_TOKENS:
            pool = TokenPool([i for i, _ in words], [p for _, p in words], [alone[i] for i, _ in words])
        else:
            pool = TokenPool(plain, None, None)
        _POOLS[tokenizer] = pool
    return pool


class _TokenBuilder:
    """Builds texts of exactly ``n`` tokens of one tokenizer from random plain-text tokens."""

    def __init__(self, tokenizer: TokenCounter, rng: random.Random) -> None:
        self.tok = tokenizer
        self.rng = rng
        self.pool = token_pool(tokenizer)
        self.first = _Stride(len(self.pool.ids), rng)

    def build(self, n: int) -> str:
        """A text that ``tokenizer.count`` measures as exactly ``n`` tokens."""
        tok, rng, pool = self.tok, self.rng, self.pool
        for _ in range(MAX_RESTARTS):
            k = self.first()
            if pool.pieces is not None and pool.heads is not None:
                text = pool.heads[k] + "".join(rng.choices(pool.pieces, k=n - 1))
                ids = tok.encode(text)
                if len(ids) == n:
                    return text
            else:
                ids = [pool.ids[k], *rng.choices(pool.ids, k=n - 1)]
            # repair: decode, re-encode; too long: cut the re-encoded ids (deeper on each retry, so a bad
            # tail is replaced); too short: keep them; then pad with fresh random tokens and measure again
            for attempt in range(MAX_REPAIRS):
                ids = ids[:n] if attempt < 2 else ids[:max(1, n - attempt)]
                ids += rng.choices(pool.ids, k=n - len(ids))
                text = tok.decode(ids)
                ids = tok.encode(text)
                if len(ids) == n:
                    return text
        raise DatasetError(f"--tokenizer '{tok.path}': could not build a prompt of exactly {n} tokens "
                           f"in {MAX_RESTARTS * MAX_REPAIRS} tries")


class RandomPrompts:
    """Synthetic prompts of ``input_len`` tokens (words without a tokenizer), endless and seeded per shard.

    ``output_len`` > 0 sets each prompt's ``max_tokens`` (drawn with the same
    ``range_ratio``); 0 leaves it to the run's ``--max-tokens``. The same seed
    and shard give the same sequence; different shards give different ones.
    """

    def __init__(self, input_len: int, seed: int = 0, shard: int = 0, *, output_len: int = 0,
                 range_ratio: float = 0.0, tokenizer: TokenCounter | None = None) -> None:
        if input_len < 1:
            raise DatasetError(f"bad --input-len {input_len}: must be at least 1")
        if output_len < 0:
            raise DatasetError(f"bad --output-len {output_len}: the random dataset needs 0 (--max-tokens) or more")
        if not 0 <= range_ratio < 1:
            raise DatasetError(f"bad --range-ratio {range_ratio:g}: must be at least 0 and below 1")
        self.input_len = input_len
        self.output_len = output_len
        self.range_ratio = range_ratio
        self.shard = shard
        self.tokenizer = tokenizer
        self.rng = random.Random(f"tokenswarm-random-{seed}-{shard}")
        self.count = 0
        self._in = length_range(input_len, range_ratio)
        self._out = length_range(output_len, range_ratio) if output_len > 0 else None
        self._builder = _TokenBuilder(tokenizer, self.rng) if tokenizer is not None else None
        self._first_word = _Stride(len(VOCAB), self.rng)
        self._ready: deque[Prompt] = deque()

    def __iter__(self) -> Iterator[Prompt]:
        return self

    def prefetch(self, count: int) -> None:
        """Build the next ``count`` prompts now (before load starts), so that ``next()`` during the run only
        pops them: with a tokenizer each prompt costs one encode (about 3 ms for 1,024 tokens here), CPU
        that would otherwise stall a worker's event loop mid-run. The sequence is the same either way."""
        for _ in range(count - len(self._ready)):
            self._ready.append(self._build())

    def __next__(self) -> Prompt:
        return self._ready.popleft() if self._ready else self._build()

    def _build(self) -> Prompt:
        self.count += 1
        rng = self.rng
        n = rng.randint(*self._in)
        max_tokens = rng.randint(*self._out) if self._out else None
        if self._builder is not None:
            text = self._builder.build(n)
        else:
            text = " ".join([VOCAB[self._first_word()], *rng.choices(VOCAB, k=n - 1)])
        return Prompt(id=f"r{self.shard}-{self.count}", text=text, input_tokens=n, max_tokens=max_tokens)

    def describe(self) -> dict[str, object]:
        """What this source is, for run.json."""
        return {"dataset": "random", "input_len": self.input_len, "output_len": self.output_len,
                "range_ratio": self.range_ratio, "counted_with": self.tokenizer.path if self.tokenizer else "words"}
