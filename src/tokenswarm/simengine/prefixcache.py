"""The simulated engine's prefix cache: an LRU of prompt blocks, as vLLM's automatic prefix caching.

A prompt's tokens (the engine counts words) are cut into blocks of
``BLOCK_TOKENS``; each full block is keyed by a hash chained over every block
before it, so a block is only a hit when the whole prefix up to it matches. A
request's cached tokens are its leading blocks already in the cache (at least
one token is always computed). Hits skip prefill in the batching model and are
reported in usage (``prompt_tokens_details.cached_tokens``, SGLang's
``meta_info.cached_tokens``); the least recently used blocks are evicted when
the cache is full.
"""

from __future__ import annotations

from collections import OrderedDict

BLOCK_TOKENS = 16


class PrefixCache:
    """LRU of hash-chained prompt blocks; ``capacity_blocks`` 0 disables it."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = capacity_blocks
        self.blocks: OrderedDict[int, None] = OrderedDict()
        self.lookups = 0
        self.hit_tokens = 0
        self.prompt_tokens = 0

    def lookup_and_insert(self, tokens: list[str]) -> int:
        """The number of this prompt's tokens already cached; its blocks are cached (or refreshed) after."""
        self.lookups += 1
        self.prompt_tokens += len(tokens)
        if not self.capacity or len(tokens) < BLOCK_TOKENS:
            return 0
        blocks = self.blocks
        h = 0
        hits = 0
        matching = True
        for start in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
            h = hash((h, *tokens[start:start + BLOCK_TOKENS]))
            if matching and h in blocks:
                blocks.move_to_end(h)
                hits += 1
            else:
                matching = False
                blocks[h] = None
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        cached = min(hits * BLOCK_TOKENS, len(tokens) - 1)
        self.hit_tokens += cached
        return cached

    @property
    def hit_ratio(self) -> float:
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
