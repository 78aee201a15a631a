"""Build a servable chat model on a machine that can download nothing: a byte-level BPE tokenizer trained on
the spot and a Llama of random weights (about 108M parameters, SmolLM-135M's shape), saved to one folder that
`transformers serve` loads.

The weights are random, so the text is noise; the serving work is real: every token is a forward pass of a
30-layer model on the GPU, batched by the server's continuous batching, which is what a load test measures.

    python3 deploy/gpu/make_model.py /tmp/tokenswarm-llama [--vocab 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def corpus(n_lines: int, seed: int) -> list[str]:
    """Lines of the words tokenswarm's synthetic prompts use, plus plain English and digits, so the tokenizer
    encodes the load test's prompts compactly."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    from tokenswarm.textgen import VOCAB

    rng = random.Random(seed)
    english = ("the quick brown fox jumps over the lazy dog while a load test measures time to first token "
               "and time per output token of every streamed answer").split()
    words = list(VOCAB) + english + [str(i) for i in range(100)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) for _ in range(n_lines)]


def train_tokenizer(vocab: int, seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(20000, seed), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(folder: str, vocab: int, seed: int) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    t0 = time.time()
    torch.manual_seed(seed)
    tok = train_tokenizer(vocab, seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, do_sample=True, temperature=1.0)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    info = {"folder": folder, "parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tok),
            "layers": config.num_hidden_layers, "hidden": config.hidden_size, "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(folder, "tokenswarm-model.json"), "w") as fh:
        json.dump(info, fh, indent=1)
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps(build(a.folder, a.vocab, a.seed)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
