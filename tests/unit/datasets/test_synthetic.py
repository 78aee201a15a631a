"""The random dataset: exact lengths (words, or tokens of four real tokenizer families), ranges, seeds, shards."""

import itertools
import weakref

import pytest

from tokenizer_helpers import BUILDERS, save
from tokenswarm.datasets import DatasetError, DatasetSpec, Prompt, RandomPrompts, open_dataset, synthetic
from tokenswarm.datasets.synthetic import length_range
from tokenswarm.textgen import VOCAB, count_words
from tokenswarm.tokencount import load_tokenizer


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    return {kind: load_tokenizer(save(kind, str(root / kind))) for kind in BUILDERS}


def take(src, n: int) -> list[Prompt]:
    return list(itertools.islice(src, n))


def test_default_spec_gives_word_prompts_as_before():
    ps = take(open_dataset(DatasetSpec()), 50)
    assert [p.id for p in ps[:3]] == ["r0-1", "r0-2", "r0-3"]
    for p in ps:
        assert p.input_tokens == count_words(p.text) == 128
        assert set(p.text.split()) <= set(VOCAB)
        assert p.max_tokens is None and p.messages is None
    assert len({p.text for p in ps}) == 50
    # the old constructor still works for callers that use it directly
    assert next(RandomPrompts(16, 0, 2)).input_tokens == 16


@pytest.mark.parametrize(("n", "ratio", "expected"), [
    (100, 0.0, (100, 100)), (100, 0.1, (90, 110)), (128, 0.5, (64, 192)), (10, 0.25, (7, 13)),
    (1, 0.5, (1, 2)), (1, 0.99, (1, 2)), (3, 0.9, (1, 6)),
])
def test_length_range_as_vllm(n, ratio, expected):
    assert length_range(n, ratio) == expected


def test_range_ratio_draws_across_the_whole_range_and_output_lengths():
    ps = take(open_dataset(DatasetSpec(input_len=20, output_len=50, range_ratio=0.5, seed=4)), 2000)
    ins = [p.input_tokens for p in ps]
    outs = [p.max_tokens for p in ps]
    assert min(ins) == 10 and max(ins) == 30 and len(set(ins)) == 21
    assert min(outs) == 25 and max(outs) == 75 and len(set(outs)) == 51
    assert all(count_words(p.text) == p.input_tokens for p in ps)
    fixed = take(open_dataset(DatasetSpec(input_len=20, output_len=7)), 20)
    assert {p.max_tokens for p in fixed} == {7} and {p.input_tokens for p in fixed} == {20}


def test_seeds_and_shards():
    def texts(seed: int, shard: int, shards: int = 4) -> list[str]:
        return [p.text for p in take(open_dataset(DatasetSpec(input_len=12, seed=seed), shard, shards), 30)]

    assert texts(1, 0) == texts(1, 0)
    assert texts(1, 2) == texts(1, 2)
    assert not set(texts(1, 0)) & set(texts(1, 1))
    assert not set(texts(1, 0)) & set(texts(2, 0))
    ids = [p.id for p in take(open_dataset(DatasetSpec(), 3, 4), 2)]
    assert ids == ["r3-1", "r3-2"]


def test_prompts_differ_from_their_first_word():
    # the first words of a shard's prompts go through the whole vocabulary before one repeats
    ps = take(open_dataset(DatasetSpec(input_len=8, seed=9)), len(VOCAB))
    assert len({p.text.split()[0] for p in ps}) == len(VOCAB)
    one_word = take(open_dataset(DatasetSpec(input_len=1, seed=9)), 300)
    assert len({p.text for p in one_word}) == 300


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_token_exact_lengths_with_a_real_tokenizer(tokenizers, kind):
    tc = tokenizers[kind]
    cases = [(1, 0.0, 150), (2, 0.0, 100), (5, 0.5, 200), (64, 0.3, 200), (128, 0.0, 100), (700, 0.2, 20)]
    for input_len, ratio, count in cases:
        spec = DatasetSpec(input_len=input_len, range_ratio=ratio, output_len=16, seed=input_len)
        ps = take(open_dataset(spec, tokenizer=tc), count)
        lo, hi = length_range(input_len, ratio)
        for p in ps:
            assert lo <= p.input_tokens <= hi
            assert tc.count(p.text) == p.input_tokens, (kind, p.input_tokens, p.text)
        if ratio:
            assert len({p.input_tokens for p in ps}) > 1
        if input_len >= 5:
            assert len({p.text for p in ps}) == count


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_token_exact_through_the_repair_loop(tokenizers, kind, monkeypatch):
    # from every plain token (word pieces, "##" pieces, bare bytes of words): the decode/encode round trip
    # changes the count often, and the repair loop must still land on the exact length
    monkeypatch.setattr(synthetic, "MIN_WORD_TOKENS", 10**9)
    monkeypatch.setattr(synthetic, "_POOLS", weakref.WeakKeyDictionary())
    tc = tokenizers[kind]
    encodes = []
    real_encode = tc.encode
    monkeypatch.setattr(tc, "encode", lambda text: encodes.append(1) or real_encode(text))
    ps = take(open_dataset(DatasetSpec(input_len=40, range_ratio=0.9, seed=11), tokenizer=tc), 300)
    monkeypatch.undo()
    assert all(tc.count(p.text) == p.input_tokens for p in ps)
    assert len({p.input_tokens for p in ps}) > 30
    if kind == "bytelevel":  # byte pieces merge across token boundaries
        assert len(encodes) > len(ps) * 1.05  # the round trip really was off for some, and was repaired


def test_prefetch_keeps_the_sequence(tokenizers):
    spec = DatasetSpec(input_len=24, output_len=8, range_ratio=0.5, seed=2)
    plain = take(open_dataset(spec, tokenizer=tokenizers["bytelevel"]), 30)
    src = open_dataset(spec, tokenizer=tokenizers["bytelevel"])
    src.prefetch(10)
    assert src.count == 10 and len(src._ready) == 10
    first = take(src, 5)
    src.prefetch(20)
    assert src.count == 25
    assert first + take(src, 25) == plain


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_token_prompts_are_seeded_and_unique_from_the_start(tokenizers, kind):
    tc = tokenizers[kind]

    def run(seed: int, shard: int) -> list[Prompt]:
        return take(open_dataset(DatasetSpec(input_len=32, seed=seed), shard, 2, tokenizer=tc), 200)

    a = run(5, 0)
    assert [p.text for p in a] == [p.text for p in run(5, 0)]
    assert not {p.text for p in a} & {p.text for p in run(5, 1)}
    assert not {p.text for p in a} & {p.text for p in run(6, 0)}
    # no two prompts share even their first two tokens, so a prefix cache holds nothing useful for them
    heads = {tuple(tc.encode(p.text)[:2]) for p in a}
    assert len(heads) == len(a)


def test_bad_lengths():
    with pytest.raises(DatasetError, match=r"^bad --input-len 0: must be at least 1$"):
        RandomPrompts(0)
    with pytest.raises(DatasetError, match=r"^bad --range-ratio 1: must be at least 0 and below 1$"):
        RandomPrompts(8, range_ratio=1.0)
    with pytest.raises(DatasetError, match=r"^bad --output-len -1"):
        RandomPrompts(8, output_len=-1)
