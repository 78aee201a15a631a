"""Provenance: the command line with its secrets redacted, what a server tells about itself (vLLM's, SGLang's
and TGI's own answers), and the report's header from run.json, old run folders included."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokenswarm import provenance
from tokenswarm.http.plain import PlainClient
from tokenswarm.http.target import Target
from tokenswarm.report import provenance as report_provenance

SECRET = "sk-live-4f9a1c2b7e"


@pytest.mark.parametrize("argv", [
    ["sweep", "--api-key", SECRET],
    ["sweep", f"--api-key={SECRET}"],
    ["sweep", "--api-k", SECRET],  # argparse takes abbreviations
    ["sweep", "--header", f"Authorization: Bearer {SECRET}"],
    ["sweep", f"--header=X-Api-Key: {SECRET}"],
    ["sweep", "--host", f"http://user:{SECRET}@gpu-1:8000"],
    ["sweep", "--host", "http://gpu-1:8000", "--sim-args", f"--api-key {SECRET}"],  # found by its value
])
def test_the_command_line_keeps_no_secret(argv):
    line = provenance.command_line(argv, secrets=[f"Bearer {SECRET}"], environ={})
    assert SECRET not in line
    assert "<redacted>" in line
    assert line.startswith("tokenswarm sweep ")


def test_options_inside_one_word_are_redacted_too():
    line = provenance.command_line(["run", "--sim-args", f"--ttft-ms 10 --api-key {SECRET} --tpot-ms 2"],
                                   environ={})
    assert SECRET not in line and "'--ttft-ms 10 --api-key <redacted> --tpot-ms 2'" in line


def test_a_header_keeps_its_name_and_other_words_stay():
    line = provenance.command_line(["run", "--header", "Authorization: Bearer abcdefgh", "--levels", "1,2,4",
                                    "--host", "http://gpu-1:8000"], environ={})
    assert line == ("tokenswarm run --header 'Authorization: <redacted>' --levels 1,2,4 "
                    "--host http://gpu-1:8000")


def test_the_key_from_the_environment_is_redacted_wherever_it_appears():
    env = {"OPENAI_API_KEY": SECRET}
    line = provenance.command_line(["run", "--run-name", f"try-{SECRET}"], environ=env)
    assert SECRET not in line and "try-<redacted>" in line


def test_client_machine_names_host_cpus_os_python():
    c = provenance.client_machine()
    assert c["host"] and c["cpus"] >= 1 and c["os"] and c["python"].count(".") == 2


# -- what the server tells ---------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}
    server_header = ""
    seen: list[tuple[str, str]] = []
    delay_s = 0.0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        time.sleep(self.delay_s)
        status, body = self.routes.get(self.path, (404, b'{"detail":"Not Found"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def version_string(self) -> str:
        return self.server_header or super().version_string()

    def log_message(self, *_args) -> None:
        pass


def _serve(routes: dict[str, object], server_header: str = "", delay_s: float = 0.0
           ) -> Iterator[tuple[Target, type]]:
    handler = type("H", (_Handler,), {
        "routes": {p: (200, json.dumps(b).encode()) if not isinstance(b, tuple) else b for p, b in routes.items()},
        "server_header": server_header, "seen": [], "delay_s": delay_s})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield Target("http", "127.0.0.1", srv.server_address[1], ""), handler
    finally:
        srv.shutdown()
        srv.server_close()


def _models(target: Target):
    with PlainClient(5, 5) as c:
        return c.get(target.url("/v1/models"))


VLLM_MODELS = {"object": "list", "data": [
    {"id": "Qwen/Qwen2.5-0.5B-Instruct", "object": "model", "created": 1733000000, "owned_by": "vllm",
     "root": "/models/Qwen2.5-0.5B-Instruct", "parent": None, "max_model_len": 32768,
     "permission": [{"id": "modelperm-1", "object": "model_permission", "allow_sampling": True}]}]}


def test_vllm_tells_its_version_server_and_model():
    for target, handler in _serve({"/version": {"version": "0.8.5.post1"}, "/v1/models": VLLM_MODELS},
                                  server_header="uvicorn"):
        info = provenance.engine_info(target, {"Authorization": f"Bearer {SECRET}"}, "Qwen/Qwen2.5-0.5B-Instruct",
                                      _models(target))
        assert info == {"version": "0.8.5.post1", "version_source": "GET /version", "server": "uvicorn",
                        "owned_by": "vllm", "model_root": "/models/Qwen2.5-0.5B-Instruct", "max_model_len": 32768}
        assert [p for p, _ in handler.seen] == ["/v1/models", "/version"]  # the first version found ends it
        assert handler.seen[1][1] == f"Bearer {SECRET}"  # a guarded server gets the key


def test_sglang_tells_its_version_in_server_info_and_its_own_key_is_not_kept():
    server_info = {"model_path": "meta-llama/Llama-3.1-8B-Instruct", "tp_size": 1, "api_key": SECRET,
                   "version": "0.4.6.post2", "internal_states": [{"last_gen_throughput": 12.5}]}
    name = "meta-llama/Llama-3.1-8B-Instruct"
    models = {"object": "list", "data": [{"id": name, "object": "model", "created": 1, "owned_by": "sglang",
                                          "root": name, "max_model_len": 131072}]}
    for target, _h in _serve({"/get_server_info": server_info, "/v1/models": models}):
        info = provenance.engine_info(target, {}, "meta-llama/Llama-3.1-8B-Instruct", _models(target))
        assert info["version"] == "0.4.6.post2" and info["version_source"] == "GET /get_server_info"
        assert info["owned_by"] == "sglang" and info["max_model_len"] == 131072
        assert SECRET not in json.dumps(info)


def test_tgi_info_gives_version_and_model_id():
    for target, _h in _serve({"/info": {"model_id": "bigscience/bloom-560m", "version": "2.4.1",
                                        "sha": "abc", "max_input_tokens": 1024}}):
        info = provenance.engine_info(target, {}, "tgi", None)
        assert info["version"] == "2.4.1" and info["model_root"] == "bigscience/bloom-560m"


def test_a_server_that_tells_nothing_reads_unknown():
    for target, _h in _serve({"/version": (200, b"<html>ok</html>"), "/info": {"name": "no version here"}}):
        info = provenance.engine_info(target, {}, "m", None)
        assert info["version"] == provenance.UNKNOWN and info["version_source"] is None


def test_an_unreachable_server_reads_unknown_and_raises_nothing():
    info = provenance.engine_info(Target("http", "127.0.0.1", 9, ""), {}, "m", None, connect_timeout_s=1)
    assert info["version"] == provenance.UNKNOWN


def test_the_probes_go_to_the_servers_root_under_a_base_path():
    for target, handler in _serve({"/version": {"version": "0.9.0"}}):
        info = provenance.engine_info(target._replace(base_path="/v1"), {}, "m", None)
        assert info["version"] == "0.9.0" and handler.seen[0][0] == "/version"


# -- the report's header from run.json --------------------------------------------------------------------
def test_header_from_a_run_json_with_provenance():
    meta = {"settings": {"engine": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct"},
            "provenance": {"date": "2026-12-07T10:58:02Z", "tokenswarm": "0.3.1", "command": "tokenswarm sweep",
                           "client": {"host": "lg-1", "cpus": 16, "os": "Linux-6.8", "python": "3.12.3"},
                           "engine": {"version": "0.8.5", "version_source": "GET /version", "server": "uvicorn",
                                      "owned_by": "vllm", "max_model_len": 32768}}}
    facts = dict((name, value) for name, value, _code in report_provenance.header_facts(meta))
    assert facts == {"Date": "2026-12-07 10:58:02 UTC", "tokenswarm": "0.3.1", "Command": "tokenswarm sweep",
                     "Client": "lg-1, 16 CPUs, Linux-6.8, Python 3.12.3",
                     "Engine": "vllm 0.8.5 (GET /version; server uvicorn; max_model_len 32768)",
                     "Model": "Qwen/Qwen2.5-0.5B-Instruct"}


def test_header_of_an_older_run_folder_falls_back_then_says_unknown():
    meta = {"started": 1_790_000_000.0, "settings": {"engine": "sglang"},
            "versions": {"tokenswarm": "0.1.0", "python": "3.11.7", "locust": "2.32.4"},
            "host": {"name": "lg-2", "platform": "Linux-6.1", "cpus": 8}}
    r = report_provenance.of_run(meta)
    assert r["date"] == "2026-09-21T14:13:20Z" and r["tokenswarm"] == "0.1.0"
    assert r["client"] == "lg-2, 8 CPUs, Linux-6.1, Python 3.11.7, Locust 2.32.4"
    assert r["engine"] == "sglang, version unknown" and r["command"] == "unknown" and r["model"] == "unknown"
    assert report_provenance.of_run({})["date"] == "unknown"


def test_a_slow_server_is_asked_no_longer_than_the_budget(monkeypatch):
    monkeypatch.setattr(provenance, "PROBE_BUDGET_S", 0.3)
    for target, handler in _serve({}, delay_s=0.6):
        info = provenance.engine_info(target, {}, "m", None)
        assert info["version"] == provenance.UNKNOWN
        assert [p for p, _ in handler.seen] == ["/version"]  # the first probe took longer than the budget
