"""The metric formulas of DESIGN.md, from hand-made event sequences."""

import pytest

from tokenswarm.measure import (
    SOURCE_EVENTS,
    SOURCE_TOKENIZER,
    SOURCE_USAGE,
    Event,
    StreamMeasure,
    Usage,
    check_usage,
    itl_ms,
    tpot_ms,
)


def test_tpot_formula_and_its_undefined_cases():
    assert tpot_ms(1000.0, 200.0, 5) == pytest.approx(200.0)  # (1000-200)/(5-1)
    assert tpot_ms(1000.0, 200.0, 1) is None
    assert tpot_ms(None, 200.0, 5) is None
    assert tpot_ms(1000.0, None, 5) is None
    assert tpot_ms(1000.0, 200.0, 60, output_events=1) is None  # one event carried them all: no timing
    assert tpot_ms(1000.0, 200.0, 60, output_events=2) == pytest.approx(800.0 / 59)


def test_itl_splits_a_gap_over_the_tokens_of_the_event_that_ends_it():
    # events at 0, 10 ms (1 token), 40 ms (3 tokens)
    assert itl_ms([0.0, 0.010, 0.040], [1, 1, 3]) == pytest.approx([10.0, 10.0, 10.0, 10.0])
    assert itl_ms([0.0], [4]) == []


def feed(m, events):
    for t, ev in events:
        m.feed(t, ev)


def test_role_only_and_empty_chunks_do_not_start_ttft():
    m = StreamMeasure(send=100.0)
    feed(m, [
        (100.05, Event()),  # role-only chunk
        (100.06, Event(text="")),
        (100.20, Event(text="Hi")),
        (100.30, Event(text=" you", finish="length")),
        (100.31, Event(usage=Usage(10, 2))),
        (100.32, Event(done=True)),
    ])
    r = m.record("id", "ok", closed=100.33)
    assert r.ttft_ms == pytest.approx(200.0)
    assert r.ttft_visible_ms == pytest.approx(200.0)
    assert r.e2e_ms == pytest.approx(300.0)
    assert r.close_ms == pytest.approx(330.0)
    assert r.tpot_ms == pytest.approx(100.0)
    assert r.output_tokens == 2 and r.token_source == SOURCE_USAGE
    assert r.input_tokens == 10
    assert r.finish_reason == "length"
    assert r.itl_ms == pytest.approx([100.0])


def test_reasoning_counts_for_ttft_but_not_for_visible_ttft():
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(reasoning="think")), (0.5, Event(text="answer")),
             (0.6, Event(usage=Usage(3, 6, reasoning_tokens=5)))])
    r = m.record("id", "ok")
    assert r.ttft_ms == pytest.approx(100.0)
    assert r.ttft_visible_ms == pytest.approx(500.0)
    assert r.reasoning_tokens == 5
    assert r.tpot_ms == pytest.approx((500.0 - 100.0) / 5)


def test_token_count_increase_alone_is_output():
    # e.g. a special token: no text, but the per-event count went up
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(tokens=1)), (0.2, Event(text="x", tokens=2))])
    r = m.record("id", "ok")
    assert r.ttft_ms == pytest.approx(100.0)
    assert r.ttft_visible_ms == pytest.approx(200.0)
    assert r.output_tokens == 2 and r.token_source == SOURCE_USAGE


def test_a_count_appearing_only_at_the_end_is_a_total_not_a_burst():
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(text="a")), (0.2, Event(text="b")), (0.3, Event(text="c", tokens=64))])
    r = m.record("id", "ok")
    assert r.itl_ms == pytest.approx([100.0, 100.0])  # not split 64 ways


def test_output_token_sources_in_order_of_preference():
    def run(count=None, usage=None):
        m = StreamMeasure(send=0.0)
        feed(m, [(0.1, Event(text="a b")), (0.2, Event(text=" c"))])
        if usage:
            m.feed(0.3, Event(usage=usage))
        return m.record("id", "ok", count_tokens=count)

    r = run(usage=Usage(1, 7))
    assert (r.output_tokens, r.token_source) == (7, SOURCE_USAGE)
    r = run(count=lambda s: len(s.split()))
    assert (r.output_tokens, r.token_source) == (3, SOURCE_TOKENIZER)
    r = run()
    assert (r.output_tokens, r.token_source) == (2, SOURCE_EVENTS)


def test_usage_merges_field_by_field():
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(text="a")), (0.2, Event(usage=Usage(prompt_tokens=9))),
             (0.3, Event(usage=Usage(completion_tokens=1)))])
    r = m.record("id", "ok", input_tokens=5)
    assert r.input_tokens == 9 and r.output_tokens == 1


def test_failure_keeps_what_was_measured():
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(text="a"))])
    r = m.record("id", "disconnect", error="connection closed mid-stream", closed=0.2)
    assert r.failed and not r.ok
    assert r.ttft_ms == pytest.approx(100.0)
    assert r.error == "connection closed mid-stream"


def test_response_id_from_the_stream_wins_over_the_client_id():
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(text="a", response_id="chatcmpl-1")), (0.2, Event(text="b", response_id="other"))])
    assert m.record("client-1", "ok").request_id == "chatcmpl-1"


@pytest.mark.parametrize("usage,events,want", [
    (Usage(20, 6, 190, None, 216), 6, (196, "reasoning_outside_completion")),  # Gemini via a gateway
    (Usage(20, 6, 190), 6, (196, "reasoning_outside_completion")),  # no total: reasoning > completion tells
    (Usage(20, 196, 190, None, 216), 6, (196, "")),  # reasoning inside completion, as OpenAI counts
    (Usage(0, 0, None, None, 0), 3, (None, "zero_usage_after_output")),  # a gateway's made-up usage
    (Usage(0, 0), 0, (0, "")),  # nothing generated, nothing said: consistent
    (Usage(20, 10, None, None, 25), 10, (10, "total_mismatch")),  # unexplained: flagged, completion kept
    (Usage(20, 10, None, None, 30), 10, (10, "")),
    (Usage(20, 10), 10, (10, "")),  # no total: nothing to check
    (Usage(20, None), 4, (None, "")),
    (Usage(20, "10"), 4, (None, "total_mismatch")),  # not a number: not trusted
])
def test_usage_is_checked_against_itself_and_the_stream(usage, events, want):
    assert check_usage(usage, events) == want


def test_a_record_says_which_check_failed_and_uses_the_count_it_chose():
    m = StreamMeasure(0.0)
    feed(m, [(0.1, Event(text="a")), (0.2, Event(text="b")), (0.3, Event(text="c")),
             (0.3, Event(usage=Usage(0, 0, None, None, 0))), (0.3, Event(done=True))])
    rec = m.record("c", "truncated", input_tokens=7)
    assert rec.output_tokens == 3 and rec.token_source == SOURCE_EVENTS and rec.input_tokens == 7
    assert rec.token_check == "zero_usage_after_output+no_finish"
    rec = m.record("c", "truncated", input_tokens=7, count_tokens=lambda text: 2 * len(text))
    assert rec.output_tokens == 6 and rec.token_source == SOURCE_TOKENIZER


def test_one_output_event_has_no_tpot_whatever_the_usage_says():
    m = StreamMeasure(0.0)
    feed(m, [(3.0, Event(text="all sixty tokens at once", finish="stop")), (3.0, Event(usage=Usage(18, 60)))])
    rec = m.record("c", "ok")
    assert rec.output_tokens == 60 and rec.output_events == 1
    assert rec.tpot_ms is None and rec.itl_ms == [] and rec.ttft_ms == pytest.approx(3000.0)


def test_hidden_reasoning_is_inside_ttft_and_out_of_tpot():
    # a reasoning model whose reasoning is counted but not streamed (OpenAI's, or a gateway that drops it): 100
    # hidden reasoning tokens, then 5 content tokens 20 ms apart. TPOT over all 105 read 0.8 ms
    m = StreamMeasure(send=0.0)
    feed(m, [(1.0 + 0.02 * i, Event(text="tok")) for i in range(5)]
         + [(1.1, Event(finish="stop")), (1.1, Event(usage=Usage(10, 105, reasoning_tokens=100)))])
    r = m.record("id", "ok")
    assert r.output_tokens == 105 and r.reasoning_tokens == 100  # the usage's count stays the record's
    assert r.ttft_ms == pytest.approx(1000.0) and r.tpot_ms == pytest.approx(80.0 / 4)
    # reasoning streamed inside the content (<think>...</think>), usage counting it as reasoning: it came after
    # TTFT, and its events (one a token) outnumber the 5 answer tokens, so all 105 tokens count
    m = StreamMeasure(send=0.0)
    feed(m, [(1.0 + 0.02 * i, Event(text="tok")) for i in range(105)]
         + [(3.2, Event(finish="stop")), (3.2, Event(usage=Usage(10, 105, reasoning_tokens=100)))])
    assert m.record("id", "ok").tpot_ms == pytest.approx(0.02 * 104 * 1000 / 104)
    # streamed reasoning is timed from its first event (the previous test): all its tokens count
    m = StreamMeasure(send=0.0)
    feed(m, [(0.1, Event(reasoning="think")), (0.5, Event(text="answer")),
             (0.6, Event(usage=Usage(3, 6, reasoning_tokens=5)))])
    assert m.record("id", "ok").tpot_ms == pytest.approx((500.0 - 100.0) / 5)
