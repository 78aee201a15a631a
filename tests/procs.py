"""Test helper: a child process whose output (stdout and stderr together) is read line by line as it comes."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_clean() -> dict[str, str]:
    """The environment without tokenswarm's or Locust's own variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}


class Proc:
    """``args`` run in ``cwd`` with ``env`` (default :func:`env_clean`); each output line, passed through
    ``clean``, is kept in :attr:`lines` as it arrives."""

    def __init__(self, args: list[str], cwd: str = ROOT, env: dict[str, str] | None = None,
                 clean: Callable[[str], str] = lambda line: line) -> None:
        self._clean = clean
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=env_clean() if env is None else env, cwd=cwd)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(self._clean(line.rstrip("\n")))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def tail(self, n: int = 120) -> str:
        return "\n".join(self.lines[-n:])

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        """The first output line matching ``pattern``; AssertionError (with the output's end) after ``timeout``
        seconds, or as soon as the process ended without printing one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.p.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout:g}s; output:\n{self.tail()}")

    def finish(self, timeout: float = 120) -> int:
        code = self.p.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


#: for :func:`locust_child`, before a test's own (dedented) code: a Locust master (``menv``, ``master``) and one worker
#: (``wenv``, ``worker``) connected over loopback, the worker already among the master's clients; user class ``U``,
#: ``w`` = tokenswarm.loadgen.workarounds
MASTER_AND_WORKER = """
import gevent, socket
from locust import User, constant, task
from locust.env import Environment
from tokenswarm.loadgen import workarounds as w

class U(User):
    wait_time = constant(1)
    @task
    def t(self):
        pass

with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    port = _s.getsockname()[1]
menv, wenv = Environment(user_classes=[U]), Environment(user_classes=[U])
master = menv.create_master_runner("127.0.0.1", port)
worker = wenv.create_worker_runner("127.0.0.1", port)
for _ in range(100):
    if w.worker_states(master):
        break
    gevent.sleep(0.05)
"""


def locust_child(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh Python with gevent's monkey patching first (as Locust needs), and return the JSON
    object its last line of output prints. Tests of the modules that import Locust run this way."""
    import json
    import sys
    import textwrap

    code = "from gevent import monkey\nmonkey.patch_all()\n" + textwrap.dedent(code)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])
