"""Real tokenizers trained in a second from generated text, saved as tokenizer.json (no download).

Four families, so token-exact code is tested against the round-trip quirks
each has: byte-level BPE (GPT-2, Llama 3, Qwen), Metaspace BPE with byte
fallback (Mistral and newer SentencePiece conversions), the legacy
SentencePiece conversion of Llama 2 (no pre-tokenizer: spaces become ``▁`` in
the normalizer, merges may span words), and WordPiece (BERT, lowercasing,
with a post-processor that adds [CLS]/[SEP] and padding saved in the file).
"""

from __future__ import annotations

import functools
import os
import random

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from tokenswarm.textgen import VOCAB

_EXTRA = ("café", "naïve", "über", "straße", "你好", "世界", "こんにちは", "мир", "😀", "日本語", "ñandú", "Ω")
_PUNCT = (".", ",", "!", "?", ";", ":", "(", ")", "'", '"', "-", "123", "2024", "3.14")


def corpus(lines: int = 3000, seed: int = 1) -> list[str]:
    """Generated training text: vocabulary words, punctuation, digits, accented and CJK words, emoji."""
    rng = random.Random(seed)
    pool = list(VOCAB) + list(_EXTRA) * 8 + list(_PUNCT) * 8
    out = []
    for _ in range(lines):
        words = rng.choices(pool, k=rng.randint(5, 30))
        # glue some words together so BPE learns merges across the vocabulary's syllables
        out.append(" ".join(w + rng.choice(pool) if rng.random() < 0.2 else w for w in words).capitalize())
    return out


def byte_level_bpe(vocab_size: int = 2000) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A <|endoftext|>",
        special_tokens=[("<|endoftext|>", tok.token_to_id("<|endoftext|>")),
                        ("<|im_start|>", tok.token_to_id("<|im_start|>"))])
    return tok


def _metaspace_trained(tok: Tokenizer, vocab_size: int, seed: int) -> Tokenizer:
    """``tok`` with Metaspace pre-tokenizing, the ``▁``/byte-fallback decoder, trained on :func:`corpus`."""
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
                                  show_progress=False)
    tok.train_from_iterator(corpus(seed=seed), trainer)
    return tok


def metaspace_bpe(vocab_size: int = 1500) -> Tokenizer:
    return _metaspace_trained(Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True)), vocab_size, seed=2)


def sentencepiece_legacy(vocab_size: int = 1500) -> Tokenizer:
    """Llama 2 as converted from SentencePiece: no pre-tokenizer, spaces become ``▁`` in the normalizer."""
    tok = _metaspace_trained(Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True)),
                             vocab_size, seed=4)
    tok.pre_tokenizer = None  # Metaspace was for training only: pieces never span words, as in SentencePiece
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def wordpiece(vocab_size: int = 1500) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                                        show_progress=False)
    tok.train_from_iterator(corpus(seed=3), trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    tok.enable_padding(length=64, pad_token="[PAD]", pad_id=tok.token_to_id("[PAD]"))
    tok.enable_truncation(max_length=64)
    return tok


BUILDERS = {"bytelevel": byte_level_bpe, "metaspace": metaspace_bpe, "spm-legacy": sentencepiece_legacy,
            "wordpiece": wordpiece}


@functools.cache
def _trained(kind: str) -> str:
    return BUILDERS[kind]().to_str()


def save(kind: str, folder: str) -> str:
    """Save a tokenizer of ``kind`` (trained once per test process) as ``folder/tokenizer.json``; return the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(_trained(kind))
    return path
