"""A process's record sink (tokenswarm.loadgen.recordsink): what it feeds Locust's statistics (one request per
request, E2E, sized in bytes received; TTFT and TPOT rows outside Locust's total), the rows it passes on, and
secrets scrubbed from error texts. In a child process: it imports Locust, which monkey-patches."""

import json
import subprocess
import sys
import textwrap


def test_locust_counts_each_request_once_and_e2e_sizes_are_bytes():
    code = """
        import json
        from gevent import monkey
        monkey.patch_all()
        from locust.env import Environment
        from tokenswarm.datasets import Prompt
        from tokenswarm.loadgen.recordsink import RecordSink
        from tokenswarm.measure import RequestRecord

        env = Environment(user_classes=[])
        env.create_local_runner()
        rows = []
        sink = RecordSink(env, "w1", rows.extend, scrub=lambda text: text.replace("sk-secret", "<redacted>"))
        ok = RequestRecord("a", 0.0, ttft_ms=50.0, tpot_ms=10.0, e2e_ms=1320.0, output_tokens=128,
                           received_bytes=27000)
        one_token = RequestRecord("b", 0.0, ttft_ms=40.0, e2e_ms=40.0, output_tokens=1, received_bytes=400)
        failed = RequestRecord("c", 0.0, status="http_error", http_status=500, error="HTTP 500: boom sk-secret",
                               close_ms=3.0, received_bytes=150)
        for rec in (ok, one_token, failed):
            sink.finish(rec, user=3, prompt=Prompt("p7", "hi"), level=8)
        sink.flush()
        from tokenswarm.requestscsv import COLUMN_INDEX
        idx = {k: COLUMN_INDEX[k] for k in ("worker", "user", "level", "status", "error")}
        s = env.stats
        print(json.dumps({
            "total": [s.total.num_requests, s.total.num_failures, s.total.total_content_length],
            "e2e": [s.get("E2E", "LLM").num_requests, s.get("E2E", "LLM").num_failures],
            "ttft": s.get("TTFT", "LLM").num_requests, "tpot": s.get("TPOT", "LLM").num_requests,
            "names": sorted(n for n, _ in s.entries),
            "rows": [{k: r[i] for k, i in idx.items()} for r in rows],
        }))
    """
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["total"] == [3, 1, 27000 + 400 + 150]  # three requests, one failed; bytes received
    assert got["e2e"] == [3, 1] and got["ttft"] == 2 and got["tpot"] == 1
    assert got["names"] == ["E2E", "TPOT", "TTFT"]
    assert [r["status"] for r in got["rows"]] == ["ok", "ok", "http_error"]
    assert {(r["worker"], r["user"], r["level"]) for r in got["rows"]} == {("w1", "3", "8")}  # stamped
    assert "sk-secret" not in got["rows"][2]["error"] and "<redacted>" in got["rows"][2]["error"]
