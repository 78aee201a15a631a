"""Word vocabulary shared by synthetic prompts and the simulated engine's output.

The simulated engine counts one token per whitespace-separated word of a
prompt and emits one word per output token, so prompts built from this
vocabulary have an exactly known length on both sides.
"""

from __future__ import annotations

import itertools

_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "n", "r", "s", "t", "l", "m", "x")

#: 640 pronounceable, distinct, JSON-safe words ("ba", "ben", ...).
VOCAB: tuple[str, ...] = tuple(o + v + c for o, v, c in itertools.product(_ONSETS, _VOWELS, _CODAS))


def count_words(text: str) -> int:
    """Tokens of ``text`` as the simulated engine counts them: whitespace-separated words."""
    return len(text.split())
