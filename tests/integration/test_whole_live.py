"""Whole answers against the simulated engine: embeddings, rerank and stream: false chat through a run, its
levels.csv (batch, inputs/s), its report (no TTFT, said so) and compare (latency and throughput figures)."""

import json
import os

import pandas as pd
import pytest


@pytest.mark.parametrize("args,batch", [
    (["--dialect", "openai-embeddings", "--batch-size", "4"], 4),
    (["--dialect", "rerank", "--batch-size", "5"], 5),
    (["--no-stream"], None),
])
def test_whole_answers_run_report_and_compare(args, batch, cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "40", "--tpot-ms", "2")
    outs = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        p = cli("run", "--host", sim.url, "--model", "m", "--users", "2", "--requests", "8", "--max-tokens", "6",
                "--input-len", "20", "--out", out, *args)
        assert p.returncode == 0, p.stderr[-3000:]
        outs.append(out)
    df = pd.read_csv(os.path.join(outs[0], "requests.csv"))
    assert len(df) == 8 and (df.status == "ok").all()
    assert df.ttft_ms.isna().all() and df.tpot_ms.isna().all() and (df.e2e_ms >= 35).all()
    assert (df.token_source == "usage").all()
    levels = pd.read_csv(os.path.join(outs[0], "levels.csv"))
    if batch:
        # the engine counts words: every input of the batch arrived; nothing generated
        assert (df.input_tokens == 20 * batch).all() and (df.output_tokens == 0).all()
        assert levels.batch_size.iloc[0] == batch
        # levels.csv rounds each to 4 decimals
        assert levels.inputs_throughput_s.iloc[0] == pytest.approx(levels.request_throughput_req_s.iloc[0] * batch,
                                                                   rel=1e-5)
    else:
        assert (df.output_tokens == 6).all() and "batch_size" not in levels.columns
    with open(os.path.join(outs[0], "report.md")) as fh:
        report = fh.read()
    assert "TTFT, TPOT and ITL are not figures of them" in report and "Mean Latency (ms)" in report
    cmp_dir = str(tmp_path / "cmp")
    p = cli("compare", *outs, "--out", cmp_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(cmp_dir, "compare.json")) as fh:
        figures = {v["figure"] for v in json.load(fh)["verdicts"]}
    assert figures == {"request_throughput_req_s", "input_throughput_tok_s", "e2e_mean_ms", "e2e_p99_ms"}


@pytest.mark.parametrize("dialect", ["openai-chat", "anthropic-messages"])
def test_images_in_requests_count_as_input_and_request_bytes(dialect, cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "20", "--tpot-ms", "2")
    runs = {}
    for name, media in (("text", []), ("images", ["--images", "2", "--image-size", "56x56"])):
        out = str(tmp_path / name)
        p = cli("run", "--host", sim.url, "--dialect", dialect, "--model", "m", "--users", "2", "--requests", "4",
                "--max-tokens", "4", "--input-len", "30", "--seed", "7", "--out", out, *media)
        assert p.returncode == 0, p.stderr[-3000:]
        runs[name] = pd.read_csv(os.path.join(out, "requests.csv"))
    text, images = runs["text"], runs["images"]
    assert (images.status == "ok").all() and (images.token_source == "usage").all()
    # the server's count, read from usage: the prompt's words plus 2 images of (56 / 28) ** 2 patches
    assert (images.input_tokens == text.input_tokens + 2 * 4).all()
    # two 56 x 56 noise PNGs (>= 9 kB each raw) ride in every request's body, base64
    assert (images.request_bytes > text.request_bytes + 2 * 9408 * 4 // 3).all()


def test_no_stream_usage_counts_locally_and_says_so(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim_fixed.url, "--model", "m", "--users", "1", "--requests", "3", "--max-tokens", "5",
            "--no-stream-usage", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "--no-stream-usage: no usage asked for; output tokens are counted one per output event" in p.stderr
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    # the engine sends no usage without stream_options: the count is the events' (one token each here)
    assert (df.status == "ok").all() and (df.token_source == "events").all() and (df.output_tokens == 5).all()
    with open(os.path.join(out, "run.json")) as fh:
        assert json.load(fh)["settings"]["stream_usage"] is False


def test_a_media_axis_runs_once_per_setting_and_compares_them(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "axis")
    p = cli("run", "--host", sim_fixed.url, "--model", "m", "--users", "2", "--requests", "4", "--max-tokens", "4",
            "--input-len", "20", "--image-size", "56x56", "--media-axis", "images=0,2", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    a = pd.read_csv(os.path.join(out, "images-0", "requests.csv"))
    b = pd.read_csv(os.path.join(out, "images-2", "requests.csv"))
    assert (a.input_tokens == 20).all() and (b.input_tokens == 20 + 2 * 4).all()  # 2 images of 2 x 2 patches
    with open(os.path.join(out, "compare", "compare.json")) as fh:
        assert [r["label"] for r in json.load(fh)["runs"]] == ["images-0", "images-2"]
    p = cli("run", "--host", sim_fixed.url, "--dialect", "openai-completions", "--media-axis", "images=0,1",
            "--requests", "2", "--out", str(tmp_path / "bad"))
    assert p.returncode == 2 and "sends no image parts" in p.stderr and not os.path.exists(tmp_path / "bad")
