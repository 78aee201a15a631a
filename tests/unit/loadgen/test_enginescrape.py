"""Engine /metrics sampling under gevent (as in Locust processes): a slow engine costs rows, not the event loop."""

import json
import os
import subprocess
import sys
import textwrap

from procs import ROOT

SCRIPT = textwrap.dedent("""
    from gevent import monkey

    monkey.patch_all()
    import json, socket, sys, time

    import gevent

    from tokenswarm.loadgen import enginescrape

    enginescrape.SCRAPE_LIMIT_S = 0.5
    srv = socket.create_server(("127.0.0.1", 0))

    def trickle():  # answers, then sends one byte every 50 ms: each read is quick, the whole answer never ends
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100000\\r\\n\\r\\n")
        while True:
            c.sendall(b"#")
            gevent.sleep(0.05)

    ticks = []

    def tick():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    gevent.spawn(trickle)
    gevent.spawn(tick)
    t0 = time.monotonic()
    s = enginescrape.EngineMetricsSampler(f"http://127.0.0.1:{srv.getsockname()[1]}/metrics", sys.argv[1],
                                           level=lambda: 1.0, interval=60.0)
    while not s.failures and time.monotonic() - t0 < 4 * enginescrape.SCRAPE_TIMEOUT_S:
        gevent.sleep(0.05)
    took = time.monotonic() - t0
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(json.dumps({"failures": s.failures, "rows": s.rows, "took": took, "max_gap": max(gaps),
                      "limit": enginescrape.SCRAPE_LIMIT_S, "read_timeout": enginescrape.SCRAPE_TIMEOUT_S}))
""")


def test_a_trickling_metrics_page_is_given_up_without_stalling_the_loop(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "server_metrics.csv")], capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.splitlines()[-1])
    assert r["failures"] == 1 and r["rows"] == 0
    assert r["took"] < r["read_timeout"]  # the whole-scrape limit ended it, not a read timeout
    assert r["max_gap"] < r["limit"]  # other greenlets ran all along
    assert "no whole answer within 0.5s" in p.stderr  # the one warning, naming the limit
