"""Each dialect: a recorded stream and a live stream from the simulated engine give the same records;
each engine preset: a short load through its dialect against the simulated engine."""

import json
import os

import pandas as pd
import pytest

from streamserver import ScriptedServer, fixture_events, sse_response
from tokenswarm.client import Connection, StreamCall, request_head
from tokenswarm.datasets import Prompt
from tokenswarm.dialects import RequestOptions, get_dialect
from tokenswarm.http.target import Target
from tokenswarm.presets import PRESETS

TEMPLATE = '{"text_input": "{prompt}", "max_tokens": {max_tokens}, "stream": true}'

CASES = {  # dialect -> (fixture, options, live path, extra request headers)
    "openai-chat": ("vllm_chat.sse", {}, "/v1/chat/completions", {}),
    "openai-completions": ("vllm_completions.sse", {}, "/v1/completions", {}),
    "openai-responses": ("responses_incomplete.sse", {}, "/v1/responses", {}),
    "anthropic-messages": ("anthropic_max_tokens.sse", {}, "/v1/messages", {"anthropic-version": "2023-06-01"}),
    "sglang-generate": ("sglang_native.sse", {}, "/generate", {}),
    "tgi-generate-stream": ("tgi.sse", {}, "/generate_stream", {}),
    "triton-generate-stream": ("triton_cumulative.sse", {}, "/v2/models/ensemble/generate_stream",
                               {"X-Sim-Text": "cumulative"}),
    "template": ("triton_delta.sse", {"body_template": TEMPLATE, "text_path": "text_output"},
                 "/v2/models/ensemble/generate_stream", {}),
}
SAME = ("status", "output_tokens", "token_source", "finish_reason")


def recorded(dialect, fixture):
    srv = ScriptedServer(sse_response(fixture_events(fixture)))
    try:
        return StreamCall(srv.connection(), dialect, b"POST /x HTTP/1.1\r\nHost: x\r\n", b"{}", "c").run()
    finally:
        srv.stop()


def live(url, dialect, path, max_tokens, headers):
    target = Target.parse(url)
    body = json.dumps(dialect.body(Prompt("p", "one two three four five"),
                                   RequestOptions(model="m", max_tokens=max_tokens))).encode()
    head = request_head(target, "POST", path, {"Content-Type": "application/json", **headers})
    conn = Connection(target, 2.0, 10.0)
    try:
        return StreamCall(conn, dialect, head, body, "c", input_tokens=5).run()
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_and_live_streams_give_the_same_records(name, sim_fixed):
    fixture, config, path, headers = CASES[name]
    dialect = get_dialect(name, **config)
    rec = recorded(dialect, fixture)
    got = live(sim_fixed.url, dialect, path, rec.output_tokens, headers)
    assert rec.status == "ok", rec.error
    for field in SAME:
        assert getattr(got, field) == getattr(rec, field), field
    assert got.output_events == got.output_tokens  # the engine sends one token per event
    assert got.ttft_ms >= 45  # fixed TTFT 50 ms


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs_a_short_load_through_its_dialect(preset, cli, sim_fixed, tmp_path):
    host = sim_fixed.url + ("/v1" if preset == "openai" else "")
    out = str(tmp_path / "run")
    p = cli("run", "--engine", preset, "--host", host, "--model", "ensemble" if preset == "trtllm" else "m",
            "--users", "2", "--requests", "4", "--max-tokens", "5", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert len(df) == 4 and (df.status == "ok").all()
    assert (df.output_tokens == 5).all()
    with open(os.path.join(out, "run.json")) as fh:
        assert json.load(fh)["settings"]["dialect"] == PRESETS[preset].dialect


@pytest.mark.parametrize("dialect,finish", [("openai-responses", "max_output_tokens"),
                                            ("anthropic-messages", "max_tokens")])
def test_an_engine_preset_speaks_the_other_apis_by_dialect(dialect, finish, cli, sim_factory, tmp_path):
    # the engine wants a key: Anthropic's goes in x-api-key, the Responses API's in Authorization
    sim = sim_factory("--ttft-ms", "30", "--tpot-ms", "4", "--api-key", "sk-live-key-1")
    out = str(tmp_path / "run")
    p = cli("run", "--engine", "vllm", "--dialect", dialect, "--host", sim.url, "--model", "m", "--users", "2",
            "--requests", "6", "--max-tokens", "7", "--input-len", "40", "--out", out,
            env={"TOKENSWARM_API_KEY": "sk-live-key-1"})
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert len(df) == 6 and (df.status == "ok").all()
    assert (df.output_tokens == 7).all() and (df.token_source == "usage").all()
    assert (df.finish_reason == finish).all() and (df.output_events == 7).all()
    assert (df.ttft_ms >= 25).all()
    # input tokens are the server's count (the engine counts words), read from the API's usage
    assert (df.input_tokens > 0).all()
    with open(os.path.join(out, "run.json")) as fh:
        settings = json.load(fh)["settings"]
    assert settings["dialect"] == dialect and "sk-live-key-1" not in json.dumps(settings)


@pytest.mark.parametrize("dialect,words", [("openai-responses", "response.failed: server_error: injected"),
                                           ("anthropic-messages", "api_error: injected server error")])
def test_the_engines_error_event_reaches_the_record_in_the_apis_words(dialect, words, sim_factory):
    sim = sim_factory("--ttft-ms", "5", "--tpot-ms", "1", "--fault", "error_event=1", "--fault-seed", "1")
    path = get_dialect(dialect).path
    rec = live(sim.url, get_dialect(dialect), path, 6, {})
    assert rec.status == "server_error_event" and rec.error.startswith(words)
    assert rec.output_events == 3  # the tokens before the failure are kept
