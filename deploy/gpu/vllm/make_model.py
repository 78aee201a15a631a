"""Write a model folder that `vllm serve --load-format dummy` serves: a Llama-3-8B shape, no weights.

With ``--load-format dummy`` vLLM fills the weights with random values, so the folder needs only
config.json, generation_config.json and a tokenizer. The tokenizer is a BPE of exactly the model's vocabulary
(32,000 tokens), trained here on tokenswarm's prompt words and random syllables, with a chat template.

Every token decodes to plain ASCII text (a Metaspace BPE, not byte-level): random weights sample tokens
uniformly, and a byte-level vocabulary would let the server's detokenizer hold back partial UTF-8 bytes,
merging tokens into fewer stream events, which would look like the server coalescing a stream.

    python3 deploy/gpu/vllm/make_model.py OUT_DIR [--seed 0] [--vocab 32000]

(--vocab: a smaller vocabulary for tests; config.json's vocab_size follows it.)

Needs only the `tokenizers` package (no torch, no transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

VOCAB_SIZE = 32000
SPECIAL = ["<unk>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|im_end|>", "<|pad|>", "<unk>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Llama-3-8B's shape (meta-llama/Meta-Llama-3-8B config.json), with a 32,000-token vocabulary
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
    "initializer_range": 0.02, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": VOCAB_SIZE, "transformers_version": "4.57.0",
}


def corpus(n_lines: int, seed: int) -> list[str]:
    """Lines of tokenswarm's prompt words, plain English, digits and random syllables (enough distinct
    pairs for 32,000 merges)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "src"))
    try:
        from tokenswarm.textgen import VOCAB
    except ImportError:  # outside a checkout: syllables alone
        VOCAB = ()  # noqa: N806
    rng = random.Random(seed)
    english = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "a", "load", "test",
               "measures", "time", "to", "first", "token", "and", "per", "output", "of", "every", "streamed", "answer"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    syllables = [a + b for a in "bcdfghjklmnprstvwxz" for b in "aeiou"] + list(letters)
    words = list(VOCAB) + english + [str(i) for i in range(1000)]

    def word() -> str:
        if rng.random() < 0.5:
            return rng.choice(words)
        return "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))

    return [" ".join(word() for _ in range(rng.randint(8, 40))) for _ in range(n_lines)]


def train_tokenizer(seed: int, vocab: int = VOCAB_SIZE):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    alphabet = [chr(c) for c in range(32, 127)] + ["\u2581", "\n", "\t"]  # the chat template has newlines
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL, initial_alphabet=alphabet,
                                  limit_alphabet=len(alphabet), show_progress=False)
    tok.train_from_iterator(corpus(max(2000, vocab * 6), seed), trainer)
    short = vocab - tok.get_vocab_size()
    if short > 0:  # a corpus that gave fewer merges: fill up with plain-text tokens
        tok.add_tokens([AddedToken(f"\u2581w{i}", normalized=False) for i in range(short)])
    if tok.get_vocab_size() != vocab:
        raise SystemExit(f"make_model.py: error: the tokenizer has {tok.get_vocab_size()} tokens, not {vocab}")
    return tok


def build(folder: str, seed: int, vocab: int = VOCAB_SIZE) -> dict:
    t0 = time.time()
    tok = train_tokenizer(seed, vocab)
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL}
    config = {**CONFIG, "vocab_size": vocab, "bos_token_id": ids[BOS], "eos_token_id": ids[EOS],
              "pad_token_id": ids[PAD]}
    files = {
        "config.json": config,
        "generation_config.json": {"bos_token_id": ids[BOS], "eos_token_id": ids[EOS], "pad_token_id": ids[PAD],
                                   "do_sample": True, "temperature": 1.0, "top_p": 1.0,
                                   "transformers_version": CONFIG["transformers_version"]},
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
            "unk_token": UNK, "add_bos_token": False, "add_eos_token": False, "model_max_length": 8192,
            "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
        },
        "special_tokens_map.json": {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK},
    }
    for name, data in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
    plain = sum(1 for i in range(vocab) if tok.decode([i]).isascii() and tok.decode([i]).strip())
    info = {"folder": folder, "vocab": tok.get_vocab_size(), "plain_text_tokens": plain,
            "layers": CONFIG["num_hidden_layers"], "hidden": CONFIG["hidden_size"],
            "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(folder, "tokenswarm-model.json"), "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=1)
        fh.write("\n")
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=VOCAB_SIZE)
    a = ap.parse_args()
    if a.vocab < 200:
        ap.error(f"--vocab {a.vocab}: at least 200")
    print(json.dumps(build(a.folder, a.seed, a.vocab)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
