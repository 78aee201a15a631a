"""Workarounds for Locust behaviour that would distort measurements, checked in a separate process (importing
the plugin registers Locust event listeners and needs gevent's monkey patching)."""

import json
import subprocess
import sys
import textwrap


def run(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_a_worker_builds_locusts_default_arguments_once():
    # Locust's worker called default_args_dict() (a full parser build) once per option on each spawn message
    out = run("""
        import json
        from gevent import monkey
        monkey.patch_all()
        from locust import argument_parser
        calls = []
        real = argument_parser.default_args_dict
        def counting():
            calls.append(1)
            return real()
        argument_parser.default_args_dict = counting
        from tokenswarm.loadgen import plugin
        plugin._cache_default_args()
        plugin._cache_default_args()  # idempotent: no second wrapper
        first = argument_parser.default_args_dict()
        options = {k: None for k in list(first) + ["engine", "max_tokens"]}
        custom = {k for k in options if k not in argument_parser.default_args_dict()}  # as the worker does
        print(json.dumps({"builds": len(calls), "custom": sorted(custom), "same": first == real()}))
    """)
    res = json.loads(out)
    assert res["builds"] == 1  # built once, whatever the number of options and calls
    assert res["custom"] == ["engine", "max_tokens"]  # still tells tokenswarm's options from Locust's
    assert res["same"]
