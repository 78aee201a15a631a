"""What tokenswarm feeds Locust's statistics: one request per request (E2E, sized in bytes received), TTFT and
TPOT rows outside Locust's total. In a child process: it imports Locust, which monkey-patches."""

import json
import subprocess
import sys
import textwrap


def test_locust_counts_each_request_once_and_e2e_sizes_are_bytes():
    code = """
        import json
        from gevent import monkey
        monkey.patch_all()
        from types import SimpleNamespace
        from locust.env import Environment
        from tokenswarm.loadgen.session import Session
        from tokenswarm.measure import RequestRecord

        env = Environment(user_classes=[])
        env.create_local_runner()
        me = SimpleNamespace(env=env, _secrets=[], _fire=env.events.request.fire, settings=None)
        ok = RequestRecord("a", 0.0, ttft_ms=50.0, tpot_ms=10.0, e2e_ms=1320.0, output_tokens=128,
                           received_bytes=27000)
        one_token = RequestRecord("b", 0.0, ttft_ms=40.0, e2e_ms=40.0, output_tokens=1, received_bytes=400)
        failed = RequestRecord("c", 0.0, status="http_error", http_status=500, error="HTTP 500: boom",
                               close_ms=3.0, received_bytes=150)
        for rec in (ok, one_token, failed):
            Session._fire_events(me, rec)
        s = env.stats
        print(json.dumps({
            "total": [s.total.num_requests, s.total.num_failures, s.total.total_content_length],
            "e2e": [s.get("E2E", "LLM").num_requests, s.get("E2E", "LLM").num_failures],
            "ttft": s.get("TTFT", "LLM").num_requests, "tpot": s.get("TPOT", "LLM").num_requests,
            "names": sorted(n for n, _ in s.entries),
        }))
    """
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["total"] == [3, 1, 27000 + 400 + 150]  # three requests, one failed; bytes received
    assert got["e2e"] == [3, 1] and got["ttft"] == 2 and got["tpot"] == 1
    assert got["names"] == ["E2E", "TPOT", "TTFT"]
