"""The Makefile's knobs reach the commands (``make -n`` prints the commands without running them)."""

import os
import shlex
import subprocess

import pytest

from tokenswarm.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def commands(*args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "TOKENSWARM_"))}
    p = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    return [ln for ln in p.stdout.splitlines() if "/tokenswarm " in ln]


@pytest.mark.parametrize("target", ["loadtest", "run", "sweep", "ui", "capacity"])
def test_sim_args_reach_the_embedded_engine_of_every_target(target):
    # `make loadtest SIM_ARGS=...` once ran the demo's engine alone: the knob was read by `make simengine` only
    (cmd,) = commands(target, "SIM_ARGS=--ttft-ms 200 --tpot-ms 20", "SLO=ttft=500")
    demo = "--max-num-seqs 16 " if target in ("loadtest", "capacity") else ""  # the demo's engine, then the knob
    want = f"--sim-args='{demo}--ttft-ms 200 --tpot-ms 20'"
    assert want in cmd and cmd.count("--sim-args") == 1, cmd
    # a target of the user's own (HOST) starts no embedded engine: no --sim-args
    (cmd,) = commands(target, "HOST=http://127.0.0.1:9", "SIM_ARGS=--ttft-ms 200", "SLO=ttft=500")
    assert "--sim-args" not in cmd, cmd


def test_one_word_of_sim_args_is_not_taken_for_an_option():
    # `--sim-args '--strict-model'` (a separate word starting with --) made argparse say "expected one argument"
    (cmd,) = commands("run", "SIM_ARGS=--strict-model")
    assert "--sim-args='--strict-model'" in cmd, cmd
    argv = shlex.split(cmd.split("/tokenswarm ", 1)[1])
    assert build_parser().parse_args(argv).sim_args == "--strict-model"
