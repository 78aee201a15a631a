"""Local token counting with a Hugging Face ``tokenizer.json``: the middle source of token counts.

Token counts come from the server's ``usage`` first; when a server sends none
(TGI, Triton) a local tokenizer counts the generated text, and only without
one does a record fall back to counting stream events. This module owns that
local tokenizer: :func:`load_tokenizer` reads ``--tokenizer`` (a
``tokenizer.json``, a model folder holding one, or a model id already in the
local Hugging Face cache) and never downloads anything; :class:`TokenCounter`
counts, encodes and decodes without adding special tokens, and is also what
the datasets use for token-exact random prompts and length filters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from tokenswarm.errors import SettingsError

TOKENIZER_FILE = "tokenizer.json"
# files that mean "a tokenizer, but not in the one format we read"
_OTHER_FORMATS = ("tokenizer.model", "vocab.json", "vocab.txt", "tokenizer_config.json")


class TokenCounter:
    """A loaded ``tokenizer.json``: counts, encodes and decodes text, never adding special tokens.

    Padding and truncation settings saved in the file are switched off, so a
    count is the true length of the text. Safe to share between greenlets and
    threads (the Rust tokenizer holds no per-call state).
    """

    def __init__(self, tokenizer: object, path: str) -> None:
        from tokenizers import Tokenizer  # deferred: importing tokenizers costs ~30 ms

        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer
        self.path: str = path
        self.vocab_size: int = tokenizer.get_vocab_size(with_added_tokens=True)
        #: ids of added tokens (special or not): never used to build random prompts
        self.added_ids: frozenset[int] = frozenset(tokenizer.get_added_tokens_decoder())

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens added)."""
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text, encoded in one call (parallel in Rust on long lists)."""
        if len(texts) < 64:
            return [self.count(t) for t in texts]
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [len(e.ids) for e in encode(list(texts), add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, encoded in one call."""
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in encode(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (special tokens kept, so nothing is silently dropped)."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """The text of each list of ids, decoded in one call."""
        return self._tok.decode_batch([list(ids) for ids in batch], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"TokenCounter({self.path!r}, vocab_size={self.vocab_size})"


def _bad(path: str, problem: str) -> SettingsError:
    return SettingsError(f"bad --tokenizer '{path}': {problem}")


def _hub_cache(environ: Mapping[str, str]) -> str:
    if environ.get("HF_HUB_CACHE"):
        return environ["HF_HUB_CACHE"]
    home = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _newest_snapshot(folder: str) -> str | None:
    """``<folder>/snapshots/<rev>/tokenizer.json`` of a Hugging Face cache entry (the newest revision)."""
    snaps = os.path.join(folder, "snapshots")
    try:
        revs = [os.path.join(snaps, r, TOKENIZER_FILE) for r in os.listdir(snaps)]
    except OSError:
        return None
    found = [p for p in revs if os.path.isfile(p)]
    return max(found, key=os.path.getmtime) if found else None


def _resolve(path: str, environ: Mapping[str, str]) -> str:
    """The ``tokenizer.json`` file that ``--tokenizer PATH`` names, or a SettingsError saying why there is none."""
    full = os.path.expanduser(path)
    if os.path.isfile(full):
        return full
    if os.path.isdir(full):
        inside = os.path.join(full, TOKENIZER_FILE)
        if os.path.isfile(inside):
            return inside
        snap = _newest_snapshot(full)  # a Hugging Face cache entry: models--org--name/
        if snap:
            return snap
        others = [f for f in _OTHER_FORMATS if os.path.exists(os.path.join(full, f))]
        hint = f" (it has {', '.join(others)}: save the tokenizer as tokenizer.json)" if others else ""
        raise _bad(path, f"no {TOKENIZER_FILE} in that folder{hint}")
    # a model id such as "Qwen/Qwen2.5-7B-Instruct": use it only if it is already in the local cache
    parts = path.split("/")
    if len(parts) == 2 and all(parts) and not path.startswith((".", "~")):
        snap = _newest_snapshot(os.path.join(_hub_cache(environ), "models--" + "--".join(parts)))
        if snap:
            return snap
        raise _bad(path, f"no such file or folder, and no {TOKENIZER_FILE} for that model in the local Hugging Face "
                         f"cache ({_hub_cache(environ)}); tokenswarm never downloads: pass a local file or folder")
    raise _bad(path, "no such file or folder")


def load_tokenizer(path: str, environ: Mapping[str, str] | None = None) -> TokenCounter:
    """Load ``--tokenizer PATH``: a ``tokenizer.json``, a folder holding one (a Hugging Face model folder
    or cache entry), or an ``org/name`` model id already in the local Hugging Face cache.

    Never downloads. Raises :class:`~tokenswarm.errors.SettingsError` with one
    line naming the path and the problem.
    """
    if not path:
        raise _bad(path, "empty path")
    file = _resolve(path, os.environ if environ is None else environ)
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(file)
    except Exception as e:  # tokenizers raises plain Exception for every parse problem
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "" if file == os.path.expanduser(path) else f" ({file})"
        raise _bad(path, f"not a tokenizer.json{where}: {detail[:200]}") from None
    return TokenCounter(tok, file)
