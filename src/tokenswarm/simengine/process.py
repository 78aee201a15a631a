"""Running the simulated engine: in this process (:func:`serve`) or as a child (:class:`SimProcess`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any

from tokenswarm import children
from tokenswarm.simengine.handler import TRUTH_HEADER, SimConfig, SimEngine

READY_PREFIX = "tokenswarm simengine listening on "


STATS_PREFIX = "tokenswarm simengine stats: "


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _serve_one(config: SimConfig, sock: socket.socket, on_ready: Any = None) -> dict[str, Any]:
    """Run one engine on ``sock`` until SIGINT/SIGTERM; returns its stats."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = SimEngine(config)
    loop.run_until_complete(engine.start(sock))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready()
    try:
        loop.run_until_complete(stop.wait())
    finally:
        engine.close()
        stats = engine.stats()
        loop.close()
    return stats


def combine(all_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Stats of several engine processes as one: counts summed; schedule error percentiles are the worst
    process's (an upper bound), the maximum is exact."""
    out: dict[str, Any] = dict(all_stats[0])
    for key in ("requests", "finished", "errors", "cancelled", "running", "waiting", "prompt_tokens",
                "generation_tokens", "connections"):
        out[key] = sum(s.get(key, 0) for s in all_stats)
    faults: dict[str, int] = {}
    for s in all_stats:
        for k, v in s.get("faults_injected", {}).items():
            faults[k] = faults.get(k, 0) + v
    out["faults_injected"] = faults
    errs = [s["schedule_error_ms"] for s in all_stats if s.get("schedule_error_ms")]
    if errs:
        out["schedule_error_ms"] = {k: (sum(e[k] for e in errs) if k == "count" else
                                        min(e[k] for e in errs) if k == "min" else max(e[k] for e in errs))
                                    for k in errs[0]}
    out["workers"] = len(all_stats)
    return out


def serve(config: SimConfig, out: IO[str] = sys.stdout) -> dict[str, Any]:
    """Serve until SIGINT/SIGTERM; prints the URL when ready and a summary at exit. Returns the stats.

    With ``config.workers`` > 1 the engine runs in that many processes sharing one port (SO_REUSEPORT,
    the kernel spreads connections); each is an independent engine with its own batch and clock.
    """
    workers = max(1, config.workers)
    sock = _listen(config.host, config.port, reuse_port=workers > 1)
    port = sock.getsockname()[1]
    if config.truth_log and not os.path.exists(config.truth_log):
        with open(config.truth_log, "w", encoding="utf-8") as fh:
            fh.write(TRUTH_HEADER)
    children: list[tuple[int, int]] = []
    for i in range(1, workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a child engine: its own socket on the same port
            os.close(r)
            code = 0
            try:
                csock = _listen(config.host, port, reuse_port=True)
                sock.close()
                stats = _serve_one(config, csock)
                stats["worker"] = i
                os.write(w, json.dumps(stats).encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))

    def ready() -> None:
        more = f", {workers} processes" if workers > 1 else ""
        print(f"{READY_PREFIX}http://{_urlhost(config.host)}:{port} ({config.describe()}{more}; "
              f"model {config.model})", file=out, flush=True)

    stats = _serve_one(config, sock, ready)
    all_stats = [stats]
    for pid, r in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        with os.fdopen(r, "rb") as fh:
            data = fh.read()
        os.waitpid(pid, 0)
        if data:
            all_stats.append(json.loads(data))
    stats = combine(all_stats) if len(all_stats) > 1 else stats
    sched = stats.get("schedule_error_ms")
    sched_txt = (
        f"; schedule error p50 {sched['p50']:.3f} ms, p99 {sched['p99']:.3f} ms, max {sched['max']:.3f} ms"
        if sched else ""
    )
    faults = ", ".join(f"{k} {v}" for k, v in stats.get("faults_injected", {}).items()) or "none"
    print(f"tokenswarm simengine stopped: {stats['requests']} requests, {stats['generation_tokens']} tokens"
          f"{sched_txt}; faults injected: {faults}", file=out, flush=True)
    print(STATS_PREFIX + json.dumps(stats), file=out, flush=True)
    return stats


def _urlhost(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SimExitError(RuntimeError):
    """The simulated engine exited before it was ready: ``code`` its exit status (2: its arguments were bad),
    ``reason`` its last line of output without the program's prefix."""

    def __init__(self, code: int, lines: list[str]) -> None:
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")
        self.code = code
        self.reason = re.sub(r"^tokenswarm(?: simengine)?: error: ", "", last)
        super().__init__(f"simulated engine exited with code {code}: {''.join(lines)[-2000:]}")


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
        self._sink: Any = None
        self._lock = threading.Lock()

    def start(self) -> SimProcess:
        cmd = [sys.executable, "-m", "tokenswarm", "simengine", "--host", self.host, "--port", str(self.port),
               *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # its own session: a Ctrl-C meant for the load test must not stop the engine under requests in flight
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     **children.popen_kwargs())
        deadline = time.monotonic() + self.startup_timeout
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                raise SimExitError(code, self.lines)
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

    def log_to(self, path: str) -> None:
        """Write the engine's output so far to ``path``, and what follows as it comes (a run folder made
        after the engine started)."""
        with self._lock:
            if self._sink is not None:
                self._sink.close()
            self.log_path = path
            self._sink = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed when the engine's output ends)
            self._sink.writelines(self.lines)
            self._sink.flush()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        if self.log_path:
            self.log_to(self.log_path)
        try:
            for line in self.proc.stdout:
                with self._lock:
                    self.lines.append(line)
                    if self._sink is not None:
                        self._sink.write(line)
                        self._sink.flush()
        finally:
            with self._lock:
                if self._sink is not None:
                    self._sink.close()
                    self._sink = None

    def stats(self) -> dict[str, Any]:
        """The engine's ``/sim/stats`` (counters and schedule error)."""
        from urllib.request import urlopen

        with urlopen(self.url + "/sim/stats", timeout=10) as r:
            return json.loads(r.read())

    def final_stats(self) -> dict[str, Any]:
        """The stats the engine printed as it stopped (all its processes combined); {} before it stopped."""
        for line in reversed(self.lines):
            if line.startswith(STATS_PREFIX):
                return json.loads(line[len(STATS_PREFIX):])
        return {}

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
