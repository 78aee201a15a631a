"""Shared prefixes, conversations, traces and the simulated engine's prefix cache, without a server."""

import os

import pytest

from tokenswarm.datasets import DatasetError, DatasetSpec, open_dataset
from tokenswarm.simengine.prefixcache import BLOCK_TOKENS, PrefixCache
from tokenswarm.workloads import (
    Conversations,
    SharedPrefixes,
    load_trace,
)

TRACES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "traces")


def test_shared_prefixes_are_the_same_on_every_worker_and_recorded():
    a = SharedPrefixes(open_dataset(DatasetSpec(input_len=10), 0, 2), prefix_len=50, num_prefixes=3, seed=1, shard=0)
    b = SharedPrefixes(open_dataset(DatasetSpec(input_len=10), 1, 2), prefix_len=50, num_prefixes=3, seed=1, shard=1)
    assert a.prefixes == b.prefixes and len(set(a.prefixes)) == 3
    seen = set()
    for _ in range(60):
        p = next(a)
        k = int(p.prefix_id.split("-")[1])
        assert p.messages[0] == {"role": "system", "content": a.prefixes[k]}
        assert p.text.startswith(a.prefixes[k]) and p.input_tokens == 60
        seen.add(k)
    assert seen == {0, 1, 2}


def test_a_conversation_sends_its_growing_history():
    convs = Conversations(turns=3, turn_input_len=5, seed=2)
    c = convs.new()
    p1 = c.next_prompt()
    assert p1.turn == 1 and p1.conversation_id == c.id and len(p1.messages) == 1 and p1.input_tokens == 5
    c.add_reply(p1.messages[-1]["content"], "a b c")
    p2 = c.next_prompt()
    assert [m["role"] for m in p2.messages] == ["user", "assistant", "user"]
    assert p2.input_tokens == 5 + 3 + 5 and p2.turn == 2
    c.add_reply(p2.messages[-1]["content"], "d")
    p3 = c.next_prompt()
    assert p3.input_tokens == 13 + 1 + 5 and c.done
    assert convs.new().id != c.id


def test_conversations_from_sharegpt_human_turns(tmp_path):
    path = os.path.join(os.path.dirname(TRACES), "datasets", "sharegpt.json")
    convs = Conversations(turns=5, turn_input_len=5, sharegpt_path=path)
    c = convs.new()
    assert len(c.user_turns) >= 2


@pytest.mark.parametrize("name,n,span", [("plain.jsonl", 40, 9.45), ("mooncake.jsonl", 30, 5.4),
                                         ("burstgpt.csv", 24, 6.6)])
def test_trace_layouts(name, n, span):
    entries = load_trace(os.path.join(TRACES, name))
    assert len(entries) == n and entries[0].offset_s == 0.0
    assert entries[-1].offset_s == pytest.approx(span)
    assert all(b.offset_s >= a.offset_s for a, b in zip(entries, entries[1:]))
    fast = load_trace(os.path.join(TRACES, name), speed=2.0)
    assert fast[-1].offset_s == pytest.approx(span / 2)


def test_trace_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"timestamp": 1, "input_len": 5, "output_len": 3}\n{"timestamp": 2, "input_len": 5}\n')
    with pytest.raises(DatasetError, match=r"t.jsonl:2: no 'output_len' field"):
        load_trace(str(bad))
    bad.write_text("not json\n")
    with pytest.raises(DatasetError, match=r"t.jsonl:1: not JSON"):
        load_trace(str(bad))
    with pytest.raises(DatasetError, match="bad --trace-speed"):
        load_trace(os.path.join(TRACES, "plain.jsonl"), speed=0)
    with pytest.raises(DatasetError, match="no such file"):
        load_trace(str(tmp_path / "missing.jsonl"))


def test_prefix_cache_hits_whole_leading_blocks_and_evicts_lru():
    cache = PrefixCache(capacity_blocks=8)
    a = [f"w{i}" for i in range(4 * BLOCK_TOKENS + 3)]
    assert cache.lookup_and_insert(a) == 0
    assert cache.lookup_and_insert(a) == 4 * BLOCK_TOKENS  # the partial last block is never cached
    b = a[:2 * BLOCK_TOKENS] + ["x"] * (2 * BLOCK_TOKENS)
    assert cache.lookup_and_insert(b) == 2 * BLOCK_TOKENS  # shares two leading blocks
    c = ["x"] + a[1:]  # differs in the first token: no block matches (hashes are chained)
    assert cache.lookup_and_insert(c) == 0
    whole = a[:2 * BLOCK_TOKENS]
    assert cache.lookup_and_insert(whole) == 2 * BLOCK_TOKENS - 1  # at least one token is computed
    for i in range(20):  # fill the cache with other prompts: a's blocks are evicted
        cache.lookup_and_insert([f"z{i}-{j}" for j in range(BLOCK_TOKENS)])
    assert cache.lookup_and_insert(a) == 0
    assert PrefixCache(0).lookup_and_insert(a) == 0
