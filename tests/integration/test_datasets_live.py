"""Datasets and local token counting through real runs against the simulated engine."""

import json
import os

import pandas as pd

from tokenizer_helpers import save

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "datasets")


def test_a_file_dataset_is_split_between_workers(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim_fixed.url, "--dataset", "sharegpt", "--dataset-path",
            os.path.join(FIX, "sharegpt.json"), "--workers", "2", "--users", "2", "--requests", "6",
            "--max-tokens", "4", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"), dtype={"prompt_id": str})
    assert len(df) == 6 and (df.status == "ok").all()
    assert df.prompt_id.str.startswith("sharegpt").all()
    by_worker = df.groupby("worker").prompt_id.apply(set)
    if len(by_worker) == 2:  # each worker sent prompts from its own share only
        assert not (by_worker.iloc[0] & by_worker.iloc[1])
    with open(os.path.join(out, "run.json")) as fh:
        run = json.load(fh)
    assert run["settings"]["dataset"]["name"] == "sharegpt"
    # the dataset's books, in run.json and on the console: records read, used, skipped by reason
    assert run["dataset_counts"]["records"] == 7 and run["dataset_counts"]["usable"] == 5
    assert run["dataset_counts"]["skipped"] == {"fewer than 2 turns": 2}
    assert "dataset sharegpt: 7 records read, 5 used, 2 skipped (fewer than 2 turns 2)" in p.stdout
    with open(os.path.join(out, "report.md")) as fh:
        assert "Dataset sharegpt: 7 records read, 5 used, 2 skipped (fewer than 2 turns 2)." in fh.read()


def test_dataset_counts_of_a_single_process(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim_fixed.url, "--dataset", "sharegpt", "--dataset-path",
            os.path.join(FIX, "sharegpt.json"), "--users", "1", "--requests", "2", "--max-tokens", "4", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(out, "run.json")) as fh:
        assert json.load(fh)["dataset_counts"]["skipped"] == {"fewer than 2 turns": 2}


def char_level_tokenizer(folder):
    """A byte-level BPE with almost no merges: each of the engine's words becomes several tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=260, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["0123456789 +-*/ = ()"] * 50, trainer)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    tok.save(path)
    return path


def _tokenizer_run(cli, sim_fixed, tmp_path, kind):
    tok = save(kind, str(tmp_path / kind)) if kind != "chars" else char_level_tokenizer(str(tmp_path / kind))
    out = str(tmp_path / f"run-{kind}")
    p = cli("run", "--host", sim_fixed.url, "--tokenizer", tok, "--input-len", "40", "--requests", "8",
            "--users", "2", "--max-tokens", "16", "--dialect", "openai-completions", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert (df.token_source == "usage").all() and df.output_tokens_tokenizer.notna().all()
    with open(os.path.join(out, "summary.json")) as fh:
        check = json.load(fh)["tokenizer_check"]
    with open(os.path.join(out, "report.md")) as fh:
        report = fh.read()
    return df, check, report


def test_tokenizer_counts_beside_usage_and_the_report_flags_disagreement(cli, sim_fixed, tmp_path):
    # a byte-level BPE keeps each of the engine's words whole: usage and tokenizer agree, no flag
    df, check, report = _tokenizer_run(cli, sim_fixed, tmp_path, "bytelevel")
    assert (df.output_tokens_tokenizer == df.output_tokens).all()
    assert check["requests"] == 8 and check["disagree"] is False and "Token counts disagree" not in report
    # a tokenizer that splits them into characters: the counts disagree and the report says so
    df, check, report = _tokenizer_run(cli, sim_fixed, tmp_path, "chars")
    assert check["disagree"] is True and check["output_tokens_tokenizer"] > check["output_tokens_usage"]
    assert "Token counts disagree" in report


def test_without_usage_the_tokenizer_counts(cli, sim_fixed, tmp_path):
    tok = save("bytelevel", str(tmp_path / "tok"))
    out = str(tmp_path / "run")
    p = cli("run", "--engine", "trtllm", "--host", sim_fixed.url, "--model", "ensemble", "--tokenizer", tok,
            "--requests", "4", "--users", "2", "--max-tokens", "6", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert (df.token_source == "tokenizer").all()
    assert (df.output_tokens > 0).all() and (df.output_tokens == df.output_tokens_tokenizer).all()


def test_a_malformed_dataset_line_stops_the_run_before_it_starts(cli, tmp_path):
    p = cli("run", "--dataset", "jsonl", "--dataset-path", os.path.join(FIX, "malformed.jsonl"), "--out",
            str(tmp_path / "x"))
    assert p.returncode == 2 and "malformed.jsonl:" in p.stderr and "Traceback" not in p.stderr
