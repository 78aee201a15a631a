"""Running the simulated engine: in this process (:func:`serve`) or as a child (:class:`SimProcess`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from tokenswarm.simengine.server import SimConfig, SimEngine

READY_PREFIX = "tokenswarm simengine listening on "


def serve(config: SimConfig, out: IO[str] = sys.stdout) -> dict[str, Any]:
    """Serve until SIGINT/SIGTERM; prints the URL when ready and a summary at exit. Returns the stats."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = SimEngine(config)
    port = loop.run_until_complete(engine.start())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"{READY_PREFIX}http://{_urlhost(config.host)}:{port} ({config.describe()}; model {config.model})",
          file=out, flush=True)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        engine.close()
        stats = engine.stats()
        loop.close()
    sched = stats.get("schedule_error_ms")
    sched_txt = (
        f"; schedule error p50 {sched['p50']:.3f} ms, p99 {sched['p99']:.3f} ms, max {sched['max']:.3f} ms"
        if sched else ""
    )
    faults = ", ".join(f"{k} {v}" for k, v in stats.get("faults_injected", {}).items()) or "none"
    print(f"tokenswarm simengine stopped: {stats['requests']} requests, {stats['generation_tokens']} tokens"
          f"{sched_txt}; faults injected: {faults}", file=out, flush=True)
    return stats


def _urlhost(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SimProcess:
    """The simulated engine in a child process on a free loopback port; a context manager.

    ``args`` are ``tokenswarm simengine`` command-line options (``["--ttft-ms", "200"]``).
    ``url`` is known once :meth:`start` returns. :meth:`stop` sends SIGTERM and waits.
    """

    def __init__(self, args: list[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 log_path: str | None = None, startup_timeout: float = 30.0) -> None:
        self.args = list(args or [])
        self.host = host
        self.port = port
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> SimProcess:
        cmd = [sys.executable, "-m", "tokenswarm", "simengine", "--host", self.host, "--port", str(self.port),
               *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # its own session: a Ctrl-C meant for the load test must not stop the engine under requests in flight
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                raise RuntimeError(f"simulated engine exited with code {code}: {''.join(self.lines)[-2000:]}")
            self.lines.append(line)
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX):].split()[0]
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("simulated engine did not start in time")
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        sink = open(self.log_path, "a", encoding="utf-8") if self.log_path else None  # noqa: SIM115
        try:
            for line in self.proc.stdout:
                self.lines.append(line)
                if sink is not None:
                    sink.write(line)
                    sink.flush()
        finally:
            if sink is not None:
                sink.close()

    def stats(self) -> dict[str, Any]:
        """The engine's ``/sim/stats`` (counters and schedule error)."""
        from urllib.request import urlopen

        with urlopen(self.url + "/sim/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
