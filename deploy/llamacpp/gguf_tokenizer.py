"""Convert a GGUF model's own tokenizer into a Hugging Face ``tokenizer.json`` (no download).

llama.cpp keeps the whole tokenizer in the GGUF metadata: ``tokenizer.ggml.tokens`` (the vocabulary, by id),
``tokenizer.ggml.merges`` (BPE merges, ``"a b"``), ``tokenizer.ggml.token_type`` (normal, control,
user-defined, ...) and ``tokenizer.ggml.pre`` (the name of its pre-tokenizer regex set). This script reads
that metadata with llama.cpp's own reader (``gguf.GGUFReader``, from the ``gguf`` package) and builds the
equivalent byte-level BPE ``tokenizers.Tokenizer``: same vocabulary, merges and pre-tokenizer
splits, control tokens as special added tokens. Only GPT-2 style byte-level BPE (``tokenizer.ggml.model ==
"gpt2"``) with a pre-tokenizer listed in :data:`PRE_TOKENIZERS` is converted; anything else stops with a
message naming the value found. Used by build.sh for SmolLM2 (``pre == "smollm"``); the e2e test checks
its counts against llama-server's own ``/tokenize``. Needs ``gguf`` and ``tokenizers`` (build.sh installs both
into its own virtualenv).

    python gguf_tokenizer.py MODEL.gguf OUT/tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# llama.cpp pre-tokenizer name (tokenizer.ggml.pre) -> the Hugging Face pre-tokenizer that splits the same way.
# From llama.cpp's src/llama-vocab.cpp: these names share one regex list; "digits" means a first split that
# isolates every \p{N} character (HF: Digits(individual_digits=True)), and the GPT-2 regex is the one that
# HF's ByteLevel(use_regex=True) applies.
_STARCODER_LIKE = ("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b")
_GPT2_LIKE = ("gpt-2", "mpt", "olmo", "jais", "trillion", "granite-docling")
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    **{name: ("digits", "bytelevel") for name in _STARCODER_LIKE},
    **{name: ("bytelevel",) for name in _GPT2_LIKE},
}


class GGUFError(ValueError):
    pass


def read_metadata(path: str) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (as ``gguf.GGUFReader`` reads it: version 2 or 3, either byte
    order), values as Python scalars, strings and lists. Raises GGUFError naming the file when gguf cannot
    read it."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        # the reader's own GGUF.version / GGUF.tensor_count / GGUF.kv_count are the header, not metadata
        return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    except (ValueError, KeyError, IndexError) as e:  # bad magic or version, truncated file, bad UTF-8, ...
        raise GGUFError(f"{path}: gguf cannot read it: {e}") from None


def build_tokenizer(meta: dict[str, Any], source: str = "GGUF") -> Any:
    """A ``tokenizers.Tokenizer`` equivalent to the byte-level BPE tokenizer described by ``meta``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    def need(key: str) -> Any:
        if key not in meta:
            raise GGUFError(f"{source}: no '{key}' in the GGUF metadata")
        return meta[key]

    kind = need("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(f"{source}: tokenizer.ggml.model is {kind!r}; only 'gpt2' (byte-level BPE) is converted")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"{source}: tokenizer.ggml.pre is {pre!r}; converted ones: {', '.join(sorted(PRE_TOKENIZERS))}")
    tokens: list[str] = need("tokenizer.ggml.tokens")
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    merges: list[str] = need("tokenizer.ggml.merges")
    if len(types) != len(tokens):
        raise GGUFError(f"{source}: {len(tokens)} tokens but {len(types)} token types")

    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in vocab:
            raise GGUFError(f"{source}: token {tok!r} appears twice (ids {vocab[tok]} and {i})")
        vocab[tok] = i
    pairs = []
    for n, merge in enumerate(merges):
        left, sep, right = merge.partition(" ")
        if not sep or not left or not right:
            raise GGUFError(f"{source}: merge {n} is {merge!r}, expected 'left right'")
        pairs.append((left, right))
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[unk_id] if isinstance(unk_id, int) and 0 <= unk_id < len(tokens) else None

    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, unk_token=unk, fuse_unk=False, byte_fallback=False))
    steps = []
    for step in PRE_TOKENIZERS[pre]:
        if step == "digits":
            steps.append(pre_tokenizers.Digits(individual_digits=True))
        else:
            steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True))
    tok.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    # control tokens (<|im_start|>, <|endoftext|>, ...) are special; user-defined ones are plain added tokens.
    # Both are matched whole in text, as llama-server's /tokenize does (parse_special defaults to true).
    added = [AddedToken(t, special=ty == CONTROL, normalized=False)
             for t, ty in zip(tokens, types) if ty in (CONTROL, USER_DEFINED)]
    tok.add_tokens([a for a in added if not a.special])
    tok.add_special_tokens([a for a in added if a.special])
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") and isinstance(bos_id, int):
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


SAMPLES = (
    "Hello, world! The year 2024 had 366 days.",
    "  leading spaces, tabs\tand\nnew lines\n\n",
    "Ünïcödé: naïve café, 日本語のテキスト, emoji 🙂🚀",
    "def f(x):\n    return x ** 2  # squares\n",
    "<|im_start|>user\nHi<|im_end|>",
)


def self_check(tok: Any, tokens: list[str], source: str) -> None:
    """Every vocabulary entry keeps its id, and sample texts survive an encode/decode round trip."""
    vocab = tok.get_vocab(with_added_tokens=True)
    wrong = [t for i, t in enumerate(tokens) if vocab.get(t) != i]
    if wrong:
        raise GGUFError(f"{source}: {len(wrong)} tokens changed id in the conversion, e.g. {wrong[:3]!r}")
    for text in SAMPLES:
        back = tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)
        if back != text:
            raise GGUFError(f"{source}: round trip changed {text!r} into {back!r}")


def portable_json(tok: Any) -> dict[str, Any]:
    """The tokenizer's JSON in the form every ``tokenizers`` release reads (0.15 on, as the project allows).

    Releases from 0.20 write merges as ``["a", "b"]`` pairs and add ``ignore_merges``, which older ones
    reject; merges as ``"a b"`` strings (no token of a byte-level vocabulary holds a space) and the default
    ``ignore_merges`` left out mean the same to all of them.
    """
    data = json.loads(tok.to_str())
    model = data["model"]
    model["merges"] = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    if not model.get("ignore_merges"):
        model.pop("ignore_merges", None)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf", help="the model file (.gguf)")
    ap.add_argument("out", help="where to write tokenizer.json")
    args = ap.parse_args(argv)
    try:
        import gguf  # noqa: F401  (both are imported where used; a missing one is said here in one line)
        import tokenizers  # noqa: F401
    except ImportError as e:
        print(f"gguf_tokenizer: {e.msg}: install gguf and tokenizers (deploy/llamacpp/build.sh does)", file=sys.stderr)
        return 1
    try:
        meta = read_metadata(args.gguf)
        tok = build_tokenizer(meta, source=args.gguf)
        self_check(tok, meta["tokenizer.ggml.tokens"], args.gguf)
    except (OSError, GGUFError) as e:
        print(f"gguf_tokenizer: {e}", file=sys.stderr)
        return 1
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(portable_json(tok), fh, ensure_ascii=False, indent=2)
    os.replace(tmp, args.out)
    n_added = len(tok.get_added_tokens_decoder())
    print(f"gguf_tokenizer: {args.out}: {len(meta['tokenizer.ggml.tokens'])} tokens, "
          f"{len(meta['tokenizer.ggml.merges'])} merges, pre-tokenizer {meta.get('tokenizer.ggml.pre')!r}, "
          f"{n_added} added tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
