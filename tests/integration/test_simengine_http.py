"""The simulated engine over real HTTP on 127.0.0.1: formats, routes, errors, timing, truth log."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from tokenswarm.client import Connection, StreamCall, request_head
from tokenswarm.datasets import Prompt
from tokenswarm.dialects import RequestOptions, get_dialect
from tokenswarm.http.target import Target


def stream(url, dialect="openai-chat", max_tokens=5, prompt="one two three", conn=None, **req):
    d = get_dialect(dialect)
    target = Target.parse(url)
    conn = conn or Connection(target, 2.0, 10.0)
    head = request_head(target, "POST", d.path, {"Content-Type": "application/json"})
    body = json.dumps(d.body(Prompt("p", prompt), RequestOptions(model="m", max_tokens=max_tokens, **req))).encode()
    return StreamCall(conn, d, head, body, "client").run()


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_chat_and_completions_streams_parse_into_ok_records(sim_fixed):
    for dialect in ("openai-chat", "openai-completions"):
        rec = stream(sim_fixed.url, dialect, max_tokens=7, prompt="a b c d")
        assert rec.status == "ok", rec.error
        assert rec.output_tokens == 7 and rec.token_source == "usage" and rec.output_events == 7
        assert rec.input_tokens == 4
        assert rec.finish_reason == "length"
        assert rec.request_id.startswith("chatcmpl-" if dialect == "openai-chat" else "cmpl-")


def test_without_include_usage_tokens_are_counted_from_events(sim_fixed):
    rec = stream(sim_fixed.url, max_tokens=4, include_usage=False)
    assert rec.status == "ok" and rec.output_tokens == 4 and rec.token_source == "events"


def test_fixed_timing_is_kept(sim_factory, tmp_path):
    # bounds from the same run, not wall-clock targets: on a busy machine the engine may write late (its own
    # scheduling delay), but never early, and the client reads what the engine did. The engine keeps its plan
    # (token i at arrival + TTFT + i * TPOT), so a late first write shortens the gaps after it: "never early"
    # holds for each write against its planned moment, not for the mean gap.
    truth = tmp_path / "truth.csv"
    sim = sim_factory("--ttft-ms", "100", "--tpot-ms", "10", "--truth-log", str(truth))
    rec = stream(sim.url, max_tokens=11)
    sim.stop()  # writes the truth log
    import pandas as pd

    row = pd.read_csv(truth).set_index("request_id").loc[rec.request_id]
    engine_ttft = (row.first_write - row.arrival) * 1000.0
    engine_tpot = (row.last_write - row.first_write) * 1000.0 / (row.tokens - 1)
    engine_e2e = (row.last_write - row.arrival) * 1000.0
    assert engine_ttft >= 100.0 - 0.5  # the first write never early ...
    assert engine_e2e >= 100.0 + (row.tokens - 1) * 10.0 - 0.5  # ... nor the last
    assert rec.ttft_ms >= engine_ttft - 0.5  # the client's TTFT holds the engine's, plus sending
    first_token_at = rec.start_time + rec.ttft_ms / 1000.0  # both clocks are this host's
    assert abs(first_token_at - row.first_write) * 1000.0 < 2.0  # read when it was written
    assert rec.tpot_ms == pytest.approx(engine_tpot, abs=0.2)


def test_keep_alive_serves_many_requests_on_one_connection(sim_fixed):
    conn = Connection(Target.parse(sim_fixed.url), 2.0, 10.0)
    for _ in range(3):
        assert stream(sim_fixed.url, conn=conn).status == "ok"
    assert conn.requests_on_sock == 3
    conn.close()
    assert sim_fixed.stats()["requests"] == 3


@pytest.mark.parametrize("dialect", ["openai-chat", "openai-completions", "sglang-generate", "tgi-generate-stream",
                                     "triton-generate-stream"])
def test_a_stream_ends_with_one_terminator_and_leaves_the_connection_clean(sim_fixed, dialect):
    # The TGI and Triton streams end with an empty event; the engine once wrote it as an empty chunk, which is
    # chunked encoding's terminator, then the real one: the second was read as the next response's status line.
    conn = Connection(Target.parse(sim_fixed.url), 2.0, 10.0)
    for _ in range(3):
        rec = stream(sim_fixed.url, dialect, max_tokens=3, conn=conn)
        assert rec.status == "ok", rec.error
        assert conn.sock is not None  # kept alive: nothing followed the message in its last read
        time.sleep(0.05)
        conn.sock.setblocking(False)
        try:
            stray = conn.sock.recv(64, socket.MSG_PEEK)
        except BlockingIOError:
            stray = b""
        conn.sock.setblocking(True)
        conn.sock.settimeout(conn.read_timeout)
        assert stray == b"", stray
    assert conn.requests_on_sock == 3


def test_non_streaming_response(sim_fixed):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x y"}], "max_tokens": 3}).encode()
    req = urllib.request.Request(sim_fixed.url + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        status, headers, out = r.status, r.headers, json.loads(r.read())
    assert status == 200 and out["object"] == "chat.completion"
    # a first prompt: nothing of it in the prefix cache, which the engine reports as vLLM does with it on
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5,
                            "prompt_tokens_details": {"cached_tokens": 0}}
    assert len(out["choices"][0]["message"]["content"].split()) == 3
    assert headers["x-request-id"]


def test_read_only_routes(sim_factory):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--model", "my-model")
    assert get(sim.url + "/health")[0] == 200
    models = json.loads(get(sim.url + "/v1/models")[1])
    assert [m["id"] for m in models["data"]] == ["my-model"]
    stream(sim.url, max_tokens=3)
    text = get(sim.url + "/metrics")[1].decode()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                 "vllm:generation_tokens_total", "vllm:prompt_tokens_total"):
        assert name in text
    assert 'vllm:generation_tokens_total{model_name="my-model"} 3.0' in text


@pytest.mark.parametrize("path,body,status,msg", [
    ("/v1/nope", b"{}", 404, "Not Found"),
    ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/chat/completions", b'{"messages": []}', 400, "messages"),
    ("/v1/chat/completions", b'{"messages": [{"role":"user","content":"x"}], "max_tokens": 0}', 400, "max_tokens"),
    ("/v1/chat/completions", b'{"messages": [{"role":"user","content":"x"}], "max_tokens": 40000}', 400,
     "maximum context length"),
])
def test_errors_are_openai_style_json(sim_fixed, path, body, status, msg):
    req = urllib.request.Request(sim_fixed.url + path, data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == status
    assert msg in json.loads(e.value.read())["message"]


def test_strict_model_rejects_other_names(sim_factory):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--strict-model")
    rec = stream(sim.url)  # asks for model "m"
    assert rec.status == "http_error" and rec.http_status == 404 and "does not exist" in rec.error


def test_truth_log_records_write_times(sim_factory, tmp_path):
    log = tmp_path / "truth.csv"
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "5", "--truth-log", str(log))
    t0 = time.time()
    rec = stream(sim.url, max_tokens=6)
    sim.stop()
    lines = log.read_text().splitlines()
    assert lines[0] == "request_id,arrival,first_write,last_write,tokens,prompt_tokens"
    rid, arrival, first, last, tokens, ptok = lines[1].split(",")
    assert rid == rec.request_id and tokens == "6" and ptok == "3"
    assert float(first) - float(arrival) == pytest.approx(0.050, abs=0.003)
    assert float(last) - float(first) == pytest.approx(0.025, abs=0.003)
    assert t0 - 1 < float(arrival) < t0 + 5


def test_batching_model_queues_beyond_its_slots(sim_factory):
    """With 2 slots, a third concurrent request waits: its TTFT includes the queueing."""
    import threading

    sim = sim_factory("--max-num-seqs", "2", "--step-base-ms", "10", "--step-per-seq-ms", "0")
    recs = []
    threads = [threading.Thread(target=lambda: recs.append(stream(sim.url, max_tokens=20))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ttfts = sorted(r.ttft_ms for r in recs)
    assert all(r.status == "ok" for r in recs)
    # two start at once; the third waits for a slot (about 20 steps of 10 ms)
    assert ttfts[2] > ttfts[1] + 150


def test_several_engine_processes_share_one_port(sim_factory, tmp_path):
    """--workers N: N processes on one port (SO_REUSEPORT); truth log and final stats cover them all."""
    log = tmp_path / "truth.csv"
    sim = sim_factory("--workers", "3", "--ttft-ms", "5", "--tpot-ms", "2", "--truth-log", str(log))
    recs = [stream(sim.url, max_tokens=3) for _ in range(30)]  # a new connection each: spread by the kernel
    assert all(r.status == "ok" for r in recs)
    sim.stop()
    final = sim.final_stats()
    assert final["workers"] == 3 and final["requests"] == 30 and final["generation_tokens"] == 90
    lines = log.read_text().splitlines()
    assert lines[0].startswith("request_id,") and len(lines) == 31
    assert {ln.split(",")[0] for ln in lines[1:]} == {r.request_id for r in recs}
