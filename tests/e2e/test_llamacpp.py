"""A real engine on CPU: llama.cpp's llama-server serving SmolLM2-135M-Instruct, under a short tokenswarm sweep.

deploy/llamacpp/build.sh builds the server, fetches the model and converts its tokenizer into
``${TOKENSWARM_CACHE:-~/.cache/tokenswarm}/llamacpp/``. Without them these tests are skipped, except in CI
(``CI=true``), which builds them first: there a missing build is a failure. The server is started once for
the module (4 slots, 2 threads, ``--metrics``) and its log is kept in the test's tmp folder.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from tokenswarm.tokencount import load_tokenizer

# solo: the sweep times a real engine on this machine's cores; a test beside it would change its throughput
pytestmark = [pytest.mark.slow, pytest.mark.solo]

CACHE = os.path.join(os.environ.get("TOKENSWARM_CACHE") or os.path.expanduser("~/.cache/tokenswarm"), "llamacpp")
SERVER = os.path.join(CACHE, "bin", "llama-server")
TOKENIZER = os.path.join(CACHE, "models", "tokenizer.json")
MODEL_NAME = "smollm2"
LEVELS = (1, 2, 4, 8)

# texts whose token counts the converted tokenizer must give exactly as llama-server's /tokenize does
SAMPLE_TEXTS = (
    "Hello, world! How are you today?",
    "The year 2024 had 366 days; 1234567890 digits split one by one.",
    "   Leading spaces,\ttabs and\n\nblank lines\n",
    "Ünïcödé: naïve café, 日本語のテキスト, emoji 🙂🚀, Ελληνικά, русский.",
    "def square(x):\n    return x ** 2  # squares it\n",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "It's what we'll see: they're done, I've said, you'd think.",
)
PROMPTS = (  # chat prompts whose generated answers are counted both ways too
    "Write a short poem about the sea.",
    "List three colors, one per line.",
    "What is 12 times 7? Answer with the number only.",
    "Explain in two sentences what a CPU does.",
)


def _missing() -> list[str]:
    """What build.sh makes that is not there."""
    wanted = ((SERVER, os.access(SERVER, os.X_OK)),
              (os.path.join(CACHE, "models", "*.gguf"), bool(glob.glob(os.path.join(CACHE, "models", "*.gguf")))),
              (TOKENIZER, os.path.isfile(TOKENIZER)))
    return [path for path, present in wanted if not present]


@dataclass
class LlamaServer:
    url: str
    log: str
    proc: subprocess.Popen

    def log_tail(self, n: int = 40) -> str:
        with open(self.log, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])

    def post(self, path: str, body: dict, timeout: float = 60) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)

    def get_text(self, path: str, timeout: float = 10) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.read().decode()

    def tokenize(self, text: str) -> list[int]:
        return self.post("/tokenize", {"content": text})["tokens"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Iterator[LlamaServer]:
    missing = _missing()
    if missing:
        msg = f"llama.cpp engine not built (missing: {', '.join(missing)}); run deploy/llamacpp/build.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg}: CI builds it before the tests, so this is a failure", pytrace=False)
        pytest.skip(msg)
    model = sorted(glob.glob(os.path.join(CACHE, "models", "*.gguf")))[0]
    port = _free_port()
    log = str(tmp_path_factory.mktemp("llamacpp") / "llama-server.log")
    cmd = [SERVER, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", "2", "-c", "4096", "-np", "4",
           "--metrics", "-a", MODEL_NAME]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LlamaServer(f"http://127.0.0.1:{port}", log, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited with {proc.returncode} (log {log}):\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.HTTPError):
                pass  # not listening yet, or 503 while the model loads
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server did not answer /health within 60 s (log {log}):\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def tokenizer(llama):  # after the check that the build is there
    return load_tokenizer(TOKENIZER)


def test_converted_tokenizer_counts_as_llama_server_does(llama, tokenizer):
    for text in SAMPLE_TEXTS:
        assert tokenizer.encode(text) == llama.tokenize(text), text
    # the answers the model generates: same ids both ways, and usage counts exactly the tokens of the text
    reasons = set()
    for i, prompt in enumerate(PROMPTS):
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 24 if i % 2 else 96, "temperature": 0}
        answer = llama.post("/v1/chat/completions", body)
        text = answer["choices"][0]["message"]["content"]
        assert text.strip(), answer
        assert tokenizer.encode(text) == llama.tokenize(text), text
        # with "stop" the end-of-generation token (<|im_end|>) was generated but is not in the text
        reasons.add(answer["choices"][0]["finish_reason"])
        eos = 1 if answer["choices"][0]["finish_reason"] == "stop" else 0
        assert answer["usage"]["completion_tokens"] == tokenizer.count(text) + eos, (answer, tokenizer.count(text))
    assert reasons == {"stop", "length"}  # both cases were checked


def test_sweep_against_llama_server(llama, cli, tmp_path):
    out = str(tmp_path / "sweep")
    # Short prompts: on 2 cores a prompt's prefill (~5 ms a token) would dwarf the 32 tokens of decode that
    # the 4 slots batch (the chat template adds a 30-token system prompt, which llama.cpp caches per slot).
    # Greedy sampling: the preflight asks for 1 token, and at llama.cpp's default temperature SmolLM2 spends it
    # on a partial UTF-8 character in ~1 of 8 tries; the stream then carries no text and the preflight fails.
    p = cli("sweep", "--engine", "llamacpp", "--host", llama.url, "--model", MODEL_NAME,
            "--levels", ",".join(map(str, LEVELS)), "--level-duration", "15s", "--max-tokens", "32",
            "--input-len", "16", "--temperature", "0", "--tokenizer", TOKENIZER, "--out", out, timeout=300)
    context = (f"\n--- llama-server (log {llama.log})\n{llama.log_tail(15)}\n--- stdout\n{p.stdout[-2000:]}"
               f"\n--- stderr\n{p.stderr[-3000:]}")
    assert p.returncode == 0, context
    assert p.stdout.strip().splitlines()[-1] == out

    df = pd.read_csv(os.path.join(out, "requests.csv"))
    # every user of a level sent a request in it, however slow the engine (not a speed: beside a busy process
    # the engine ran 5 tok/s a slot and the sweep finished 33 requests, where a quiet machine finished over 40)
    per_level = df.groupby("level").size()
    assert all(per_level.get(n, 0) >= n for n in LEVELS), (per_level.to_dict(), context)
    assert (df.status == "ok").all(), df[df.status != "ok"][["status", "error"]].head().to_string()
    assert (df.output_tokens > 0).all() and (df.token_source == "usage").all()
    assert (df.input_tokens > 0).all() and df.ttft_ms.notna().all()
    assert set(df.level) == set(LEVELS)

    # usage and the converted tokenizer agree. Usage also counts the end-of-generation token (<|im_end|>) of a
    # request that stopped on it ("stop"), which is not in the text; beyond that a request can differ by a token
    # or two: the model may sample a split that re-tokenizing the text merges, and text held back at a cut
    # multi-byte character never arrives. Measured: 93-98 % of requests exact, totals within 1 %.
    eos = (df.finish_reason == "stop").astype(int)
    exact = (df.output_tokens == df.output_tokens_tokenizer + eos).mean()
    assert exact >= 0.8, exact
    usage, local = df.output_tokens.sum(), (df.output_tokens_tokenizer + eos).sum()
    assert abs(local - usage) <= 0.02 * usage, (usage, local)
    with open(os.path.join(out, "summary.json")) as fh:
        check = json.load(fh)["tokenizer_check"]
    assert check["requests"] == len(df)
    assert not check["disagree"], check

    lv = pd.read_csv(os.path.join(out, "levels.csv")).set_index("level")
    tp = lv["output_throughput_tok_s"]
    assert list(lv.index) == list(LEVELS) and (lv["failed"] == 0).all()
    # The level's output throughput is its window's accounting of its own requests (levels.py: each request's
    # output tokens spread over its generation span, first token to last): at least the tokens of requests whose
    # span lies inside the window, at most those plus the requests crossing its edges. Exact bounds, not a
    # speed: whatever else runs on the machine, the accounting must agree with the records.
    with open(os.path.join(out, "run.json")) as fh:
        level_end = {int(t["level"]): float(t["end"]) for t in json.load(fh)["timeline"]}
    first_token = df.start_time + df.ttft_ms / 1000
    last_token = df.start_time + df.e2e_ms / 1000
    for level in LEVELS:
        end = level_end[level]
        start = end - float(lv.loc[level, "window_s"])
        inside = (first_token >= start) & (last_token <= end)
        overlaps = (last_token > start) & (first_token < end)
        low, high = df.output_tokens[inside].sum(), df.output_tokens[overlaps].sum()
        counted = tp[level] * lv.loc[level, "window_s"]
        assert low - 0.5 <= counted <= high + 0.5, (level, low, counted, high)

    # the engine's /metrics, scraped every 2 s: llamacpp:requests_processing -> running, :requests_deferred ->
    # waiting (8 users on 4 slots), :tokens_predicted_total -> generation_tokens_total. llama.cpp serves no
    # KV-cache usage metric (kv_cache_usage_ratio is gone from this version), so that column stays empty.
    sm = pd.read_csv(os.path.join(out, "server_metrics.csv"))
    assert len(sm) >= 10, sm
    # 4 slots decode in one batch: the engine ran 4 at once, and 8 users queued. (Whether batching raised the
    # throughput is the engine's speed on these cores, which anything else running here changes: measured
    # 1.09-1.38x from 1 to 4 users on a quiet machine, 0.1x beside a busy benchmark; not asserted.)
    assert sm["running"].max() == 4 and sm["waiting"].max() >= 1, sm.to_string()
    gen = sm["generation_tokens_total"]
    assert gen.is_monotonic_increasing and gen.iloc[-1] > 0.8 * df.output_tokens.sum(), sm.to_string()
    metrics = dict(line.rsplit(" ", 1) for line in llama.get_text("/metrics").splitlines()
                   if line.startswith("llamacpp:"))
    for name in ("llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:prompt_tokens_total"):
        assert name in metrics, sorted(metrics)
    assert float(metrics["llamacpp:tokens_predicted_total"]) >= df.output_tokens.sum()
