"""File datasets from fixtures in each real layout: prompts, reference lengths, filters, shards, epochs, errors."""

import itertools
import json
import os

import pytest

from tokenizer_helpers import save
from tokenswarm.datasets import DatasetError, DatasetSpec, FilePrompts, Prompt, formats, open_dataset
from tokenswarm.datasets.files import approx_tokens
from tokenswarm.tokencount import load_tokenizer

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "fixtures", "datasets")


def fx(name: str) -> str:
    return os.path.join(FIX, name)


def read_fixture(name: str):
    """A fixture as json (a list) or JSON Lines (a list of lines) reads it."""
    with open(fx(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f] if name.endswith(".jsonl") else json.load(f)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer(save("bytelevel", str(tmp_path_factory.mktemp("tok"))))


def all_prompts(src: FilePrompts) -> list[Prompt]:
    """One epoch of a shard, sorted by id number."""
    ps = list(itertools.islice(src, len(src.prompts)))
    return sorted(ps, key=lambda p: int(p.id.rsplit("-", 1)[1]))


def open_(name: str, path: str, **kw) -> FilePrompts:
    shard = kw.pop("shard", 0)
    shards = kw.pop("shards", 1)
    tokenizer = kw.pop("tokenizer", None)
    src = open_dataset(DatasetSpec(name=name, path=path, **kw), shard, shards, tokenizer=tokenizer)
    assert isinstance(src, FilePrompts)
    return src


def err(name: str, path: str, **kw) -> str:
    with pytest.raises(DatasetError) as e:
        open_(name, path, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


# -- each layout --------------------------------------------------------------------------
def test_sharegpt_first_human_turn_and_its_answer(tok):
    src = open_("sharegpt", fx("sharegpt.json"), output_len=-1, tokenizer=tok)
    ps = all_prompts(src)
    # record 3 has one turn and record 4 none: skipped; record 6 opens with a gpt turn: its human turn is used
    assert [p.id for p in ps] == ["sharegpt-1", "sharegpt-2", "sharegpt-5", "sharegpt-6", "sharegpt-7"]
    raw = read_fixture("sharegpt.json")
    by_id = {p.id: p for p in ps}
    assert by_id["sharegpt-1"].text == raw[0]["conversations"][0]["value"]
    assert by_id["sharegpt-5"].text == "请用三句话介绍一下长城的历史。"
    assert by_id["sharegpt-6"].text == "Write a haiku about the sea."
    for i in (0, 1, 4, 5, 6):
        turns = raw[i]["conversations"]
        h = next(k for k, t in enumerate(turns) if t["from"] == "human")
        p = by_id[f"sharegpt-{i + 1}"]
        assert p.input_tokens == tok.count(turns[h]["value"])
        assert p.max_tokens == tok.count(turns[h + 1]["value"])
    assert src.describe()["records"] == 7 and src.describe()["usable"] == 5
    assert src.describe()["skipped"] == {"fewer than 2 turns": 2}  # records 3 (one turn) and 4 (none)


def test_sharegpt_books_count_every_skipped_record_by_reason(tmp_path):
    from tokenswarm.datasets.files import counts_line

    path = tmp_path / "sg.json"
    path.write_text(json.dumps([
        {"conversations": [{"role": "user", "content": "openai form"}, {"role": "assistant", "content": "ok"}]},
        {"conversations": [{"speaker": "human", "text": "unknown keys"}, {"speaker": "gpt", "text": "x"}]},
        {"conversations": [{"from": "human", "value": "q1"}, {"from": "human", "value": "q2"}]},
        {"conversations": [{"from": "gpt", "value": "hello"}, {"from": "gpt", "value": "again"}]},
        {"conversations": [{"from": "human", "value": " "}, {"from": "gpt", "value": "x"}]},
        {"conversations": [{"from": "human", "value": "fine"}, {"from": "gpt", "value": "y"}]},
        {"conversations": []},
    ]), encoding="utf-8")
    src = open_("sharegpt", str(path))
    assert sorted(p.text for p in all_prompts(src)) == ["fine", "openai form"]
    info = src.describe()
    assert info["records"] == 7 and info["usable"] == 2
    assert info["skipped"] == {"turns without from/value or role/content": 1, "no answer after the question": 1,
                               "no human turn": 1, "empty prompt": 1, "fewer than 2 turns": 1}
    line = counts_line(info)
    assert line.startswith("sharegpt: 7 records read, 2 used, 5 skipped (")
    assert "turns without from/value or role/content 1" in line


def test_blank_reference_answers_fall_back_to_max_tokens(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([
        {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi there"},
                           {"from": "gpt", "value": "  "}]},
        {"conversations": [{"from": "human", "value": "a b c"}, {"from": "gpt", "value": "d e f g"}]},
        {"conversations": [{"from": "human", "value": "q1"}, {"from": "human", "value": "q2"}]},
    ]))
    src = open_dataset(DatasetSpec(name="sharegpt", path=str(path), output_len=-1), default_max_tokens=77)
    ps = all_prompts(src)
    assert [(p.id, p.text, p.max_tokens) for p in ps] == [("sharegpt-1", "hi there", 77), ("sharegpt-2", "a b c", 4)]


def test_sharegpt_as_json_lines(tmp_path):
    raw = read_fixture("sharegpt.json")
    path = tmp_path / "sharegpt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in raw), encoding="utf-8")
    a = [p.text for p in all_prompts(open_("sharegpt", str(path)))]
    b = [p.text for p in all_prompts(open_("sharegpt", fx("sharegpt.json")))]
    assert a == b and len(a) == 5


def test_openqa_question_and_first_human_answer(tok):
    ps = all_prompts(open_("openqa", fx("open_qa.jsonl"), output_len=-1, tokenizer=tok))
    rows = read_fixture("open_qa.jsonl")
    assert [p.text for p in ps] == [r["question"] for r in rows]
    assert [p.id for p in ps] == [f"openqa-{i}" for i in range(1, 6)]
    assert ps[2].max_tokens == tok.count("Canberra")
    assert ps[3].max_tokens == 128  # no human answer: the run's --max-tokens (default_max_tokens)
    assert ps[0].max_tokens == tok.count(rows[0]["human_answers"][0])


def test_longalpaca_instruction_plus_input(tok):
    ps = all_prompts(open_("longalpaca", fx("longalpaca.json"), output_len=-1, tokenizer=tok))
    rows = read_fixture("longalpaca.json")
    assert ps[0].text == rows[0]["instruction"]  # empty input adds nothing
    assert ps[2].text == rows[2]["instruction"] + "\n\n" + rows[2]["input"]
    assert [p.max_tokens for p in ps] == [tok.count(r["output"]) for r in rows]
    assert [p.input_tokens for p in ps] == [tok.count(p.text) for p in ps]


def test_jsonl_prompt_field_and_own_output_lengths():
    ps = all_prompts(open_("jsonl", fx("prompts.jsonl"), output_len=-1))
    assert [p.id for p in ps] == ["jsonl-1", "jsonl-2", "jsonl-3", "jsonl-5", "jsonl-6"]  # line 4 is blank
    assert [p.max_tokens for p in ps] == [64, 32, 128, 100, 48]  # line 3 has none: default_max_tokens
    assert ps[4].text == "Écris un poème de quatre vers sur la pluie."
    assert all(p.input_tokens is None for p in ps)  # no tokenizer: no token count is claimed
    # without --output-len -1 the fields are ignored; a fixed --output-len applies to all
    assert {p.max_tokens for p in all_prompts(open_("jsonl", fx("prompts.jsonl")))} == {None}
    assert {p.max_tokens for p in all_prompts(open_("jsonl", fx("prompts.jsonl"), output_len=9))} == {9}


def test_jsonl_other_prompt_field(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a b c", "prompt": 5}\n{"question": "d e"}\n')
    ps = all_prompts(open_("jsonl", str(path), prompt_field="question"))
    assert [p.text for p in ps] == ["a b c", "d e"]


def test_csv_quoted_multiline_fields():
    ps = all_prompts(open_("csv", fx("prompts.csv"), output_len=-1))
    assert [p.id for p in ps] == ["csv-2", "csv-3", "csv-6", "csv-7"]  # the line each row starts on
    assert ps[1].text == ("Summarize this text:\nThe first line of a multi-line prompt.\n"
                          "The second line, with a comma.")
    assert ps[2].text == 'She said "hello" and left.'
    assert [p.max_tokens for p in ps] == [64, 40, 128, 25]


def test_tsv_by_extension(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("prompt\tmax_tokens\nhello, world\t3\n")
    ps = all_prompts(open_("csv", str(path), output_len=-1))
    assert [(p.text, p.max_tokens) for p in ps] == [("hello, world", 3)]


# -- lengths and filters ------------------------------------------------------------------
def test_approx_tokens_without_a_tokenizer():
    assert approx_tokens("one two  three\nfour") == 4
    assert approx_tokens("请用三句话") == 5
    assert approx_tokens("mix 你好 words") == 4
    assert approx_tokens("") == 0


def test_length_filters_in_tokens_and_in_words(tok):
    every = all_prompts(open_("sharegpt", fx("sharegpt.json"), tokenizer=tok))
    counts = sorted(p.input_tokens for p in every)
    lo, hi = counts[1], counts[3]
    kept = all_prompts(open_("sharegpt", fx("sharegpt.json"), tokenizer=tok, min_prompt_tokens=lo,
                             max_prompt_tokens=hi))
    assert sorted(p.input_tokens for p in kept) == counts[1:4]
    words = all_prompts(open_("sharegpt", fx("sharegpt.json"), max_prompt_tokens=8))
    assert sorted(p.text for p in words) == ["Write a haiku about the sea."]
    only_long = all_prompts(open_("jsonl", fx("prompts.jsonl"), min_prompt_tokens=7))
    assert [p.id for p in only_long] == ["jsonl-2", "jsonl-3", "jsonl-6"]  # 7, 10 and 9 words


def test_no_prompts_left(tok):
    assert err("sharegpt", fx("sharegpt.json"), min_prompt_tokens=100, max_prompt_tokens=200) == (
        f"no prompts left after the length filters (--min-prompt-tokens 100, --max-prompt-tokens 200) in "
        f"{fx('sharegpt.json')} (5 prompts, counted in words: give --tokenizer for tokens)")
    assert err("openqa", fx("open_qa.jsonl"), min_prompt_tokens=1000, tokenizer=tok).startswith(
        "no prompts left after the length filters (--min-prompt-tokens 1000) in ")


def test_a_shard_filtered_empty_borrows_from_the_file():
    # one prompt survives; the shards that hold none still get it rather than failing the run
    texts = set()
    for shard in range(3):
        src = open_("sharegpt", fx("sharegpt.json"), max_prompt_tokens=8, shard=shard, shards=3)
        texts |= {p.text for p in itertools.islice(src, 4)}
    assert texts == {"Write a haiku about the sea."}


# -- sharding, epochs, seeds --------------------------------------------------------------
def big_jsonl(tmp_path, n: int = 100) -> str:
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"prompt number {i}"}) + "\n" for i in range(n)))
    return str(path)


def test_shards_partition_the_file(tmp_path):
    path = big_jsonl(tmp_path, 100)
    shares = [{p.id for p in open_("jsonl", path, shard=i, shards=3, seed=7).prompts} for i in range(3)]
    assert [len(s) for s in shares] == [34, 33, 33]
    assert not shares[0] & shares[1] and not shares[0] & shares[2] and not shares[1] & shares[2]
    assert shares[0] | shares[1] | shares[2] == {f"jsonl-{i}" for i in range(1, 101)}
    fixture = [{p.id for p in open_("sharegpt", fx("sharegpt.json"), shard=i, shards=3).prompts} for i in range(3)]
    assert sum(len(s) for s in fixture) == 5 and len(set().union(*fixture)) == 5


def test_order_is_seeded_and_epochs_reshuffle(tmp_path):
    path = big_jsonl(tmp_path, 60)

    def first(seed: int, shard: int = 0, n: int = 30) -> list[str]:
        return [p.id for p in itertools.islice(open_("jsonl", path, seed=seed, shard=shard, shards=2), n)]

    assert first(1) == first(1)
    assert first(1) != first(2)
    assert first(1, shard=1) == first(1, shard=1) and not set(first(1)) & set(first(1, shard=1))
    src = open_("jsonl", path, seed=1, shard=0, shards=2)
    epochs = [[p.id for p in itertools.islice(src, 30)] for _ in range(3)]
    assert set(epochs[0]) == set(epochs[1]) == set(epochs[2]) and len(set(epochs[0])) == 30
    assert epochs[0] != epochs[1] != epochs[2]
    assert src.epoch == 2
    again = open_("jsonl", path, seed=1, shard=0, shards=2)
    assert [p.id for p in itertools.islice(again, 90)] == epochs[0] + epochs[1] + epochs[2]


def test_more_shards_than_prompts_still_serve():
    ids = [next(open_("longalpaca", fx("longalpaca.json"), shard=i, shards=6)).id for i in range(6)]
    assert set(ids) == {f"longalpaca-{i}" for i in range(1, 5)}


def test_prompts_handed_out_are_fresh_objects():
    src = open_("openqa", fx("open_qa.jsonl"))
    p = next(src)
    p.text = "changed"
    assert all(q.text != "changed" for q in itertools.islice(src, 10))


# -- errors name the file and the line or record ------------------------------------------
def test_malformed_jsonl_names_the_line():
    assert err("jsonl", fx("malformed.jsonl")) == (
        f"{fx('malformed.jsonl')}:3: not JSON (Unterminated string starting at column 12)")


def test_missing_fields_name_line_and_field(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_bytes(b'\xef\xbb\xbf{"question": "a BOM first"}\n\n{"answer": "no question"}\n')
    assert err("openqa", str(qa)) == f"{qa}:3: no 'question' field"
    qa.write_text('{"question": ["a list"]}\n')
    assert err("openqa", str(qa)) == f"{qa}:1: 'question' is a list, not text"
    qa.write_text('{"question": "ok"}\n["not", "an object"]\n')
    assert err("openqa", str(qa)) == f"{qa}:2: not an object but a list"
    assert err("jsonl", fx("prompts.jsonl"), prompt_field="text") == f"{fx('prompts.jsonl')}:1: no 'text' field"
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"prompt": "a", "max_tokens": "many"}\n')
    assert err("jsonl", str(lines), output_len=-1) == (
        f"{lines}:1: bad 'max_tokens' value 'many' (want a whole number of at least 1)")
    assert err("jsonl", str(lines), output_len=-1).startswith(f"{lines}:1:")
    lines.write_text('{"prompt": "a"}\n')
    assert err("jsonl", str(lines), output_len=-1) == (
        f"bad --output-len -1: no record of {lines} has an 'output_len' or 'max_tokens' field to take the output "
        "length from")


def test_json_list_errors_name_the_record(tmp_path):
    raw = read_fixture("sharegpt.json")
    path = tmp_path / "sg.json"

    def write(records) -> str:
        path.write_text(json.dumps(records, indent=2))
        return str(path)

    assert err("sharegpt", write([*raw[:4], {"id": "x", "turns": []}])) == f"{path}: record 5: no 'conversations' field"
    assert err("sharegpt", write([raw[0], {"conversations": "hi"}])) == (
        f"{path}: record 2: 'conversations' is text, not a list")
    assert err("sharegpt", write([{"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "a"}]}])
               ) == f"{path}: record 1: 'value' is a number, not text"
    assert err("longalpaca", write([{"output": "x"}])) == f"{path}: record 1: no 'instruction' field"
    assert err("sharegpt", write([])) == f"{path}: no records"
    assert err("sharegpt", write([raw[2], raw[3]])) == (
        f"{path}: no usable prompts (2 records, all skipped: fewer than 2 turns 2)")


def test_json_syntax_errors_give_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"conversations": []},\n  {"conversations": [}\n]\n')
    assert err("sharegpt", str(path)).startswith(f"{path}:3: record 2: not JSON (Expecting value at column ")
    path.write_text('[\n  {"conversations": []}\n')
    assert err("sharegpt", str(path)) == f"{path}:3: the file ends inside the list (after record 1; truncated?)"
    path.write_text('[{"conversations": []} {"conversations": []}]')
    assert err("sharegpt", str(path)) == (
        f"{path}:1: not JSON (expected ',' or ']' after record 1, found '{{')")
    path.write_text('[{"conversations": []}] []')
    assert err("sharegpt", str(path)) == f"{path}:1: not JSON (more data after the list's closing ']')"
    path.write_text("")
    assert err("sharegpt", str(path)) == f"{path}: empty file"
    path.write_bytes(b'[{"instruction": "caf\xe9"}]')
    assert err("longalpaca", str(path)).startswith(f"{path}: not UTF-8 text")


def test_csv_errors(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b\n1,2\n")
    assert err("csv", str(path)) == f"{path}:1: no column 'prompt' (columns: a, b)"
    path.write_text('prompt,note\n"fine",x\n"two\nlines",y\n,z\nshort\n')
    assert [p.id for p in all_prompts(open_("csv", str(path)))] == ["csv-2", "csv-3", "csv-6"]
    path.write_text("note,prompt\nx,fine\nonly-a-note\n")
    assert err("csv", str(path)) == f"{path}:3: no 'prompt' field"
    path.write_text("")
    assert err("csv", str(path)) == f"{path}: empty file (no header row)"
    path.write_text('prompt\n"unclosed\n')
    assert err("csv", str(path), output_len=0).startswith(f"{path}:2: bad CSV (")


def test_missing_file_and_folder(tmp_path):
    missing = tmp_path / "nope.json"
    assert err("sharegpt", str(missing)) == f"bad --dataset-path '{missing}': no such file"
    assert err("csv", str(tmp_path)) == f"bad --dataset-path '{tmp_path}': a folder, not a file"


# -- the JSON list reader against json.load, across buffer boundaries ----------------------
@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_json_list_reader_matches_json_load(monkeypatch, chunk, tmp_path):
    monkeypatch.setattr(formats, "CHUNK_CHARS", chunk)
    for name in ("sharegpt.json", "longalpaca.json"):
        records = [rec for _, rec in formats.RecordFile(fx(name)).json_records()]
        assert records == read_fixture(name)
    odd = tmp_path / "odd.json"
    values = [1, 22.5, -3, "x", [], {}, None, True, 12345678901234567890, {"a": [1, {"b": "]"}]}]
    odd.write_text("\ufeff  [ " + " ,\n ".join(json.dumps(v) for v in values) + " ]  \n")
    assert [rec for _, rec in formats.RecordFile(str(odd)).json_records()] == values
    odd.write_text("[]")
    assert list(formats.RecordFile(str(odd)).json_records()) == []


@pytest.mark.parametrize("chunk", [3, 50, 1 << 20])
def test_json_error_lines_across_buffer_boundaries(monkeypatch, chunk, tmp_path):
    monkeypatch.setattr(formats, "CHUNK_CHARS", chunk)
    path = tmp_path / "late.json"
    good = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]} for i in range(30)]
    text = json.dumps(good, indent=2)
    lines = text.count("\n")
    path.write_text(text[:-2] + ',\n  {"conversations": [}\n]')
    assert err("sharegpt", str(path)).startswith(f"{path}:{lines + 1}: record 31: not JSON (Expecting value at ")
    path.write_text(text[:-2] + ',\n  {"conversations": 7}\n]')
    assert err("sharegpt", str(path)) == f"{path}: record 31: 'conversations' is a number, not a list"


def test_max_prompts_keeps_the_head_of_the_shard(tmp_path, tok):
    path = big_jsonl(tmp_path, 100)
    full = open_("jsonl", path, seed=3, shard=1, shards=2, tokenizer=tok).prompts
    src = open_dataset(DatasetSpec(name="jsonl", path=path, seed=3, min_prompt_tokens=1), 1, 2, tokenizer=tok,
                       max_prompts=7)
    assert src.prompts == full[:7]
    assert {p.id for p in itertools.islice(src, 21)} == {p.id for p in full[:7]}
    with pytest.raises(ValueError, match="max_prompts -1"):
        open_dataset(DatasetSpec(name="jsonl", path=path), max_prompts=-1)
