"""Which processes use the CPUs during a load test: every INTERVAL seconds, one CSV row per process using
at least 1 % of a core, with its role (``server``: the vLLM server's process tree; ``client``: anything
else) and its busiest thread (a Python process whose busiest thread sits near 100 % is bound by one core,
whatever its total).

    python3 cpu_sample.py OUT.csv --server-pid PID [--interval 2]      (stops on SIGTERM or SIGINT)

Columns: time (epoch s), pid, ppid, role, kind (vllm-serve, vllm-bench, tokenswarm-master, tokenswarm-worker,
from the command line, which is not written), name, cpu (the CPUs it may run on), cpu_pct (percent of one
core over the interval), top_thread_pct, threads, rss_mb. Needs psutil.
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import time

import psutil

MIN_PCT = 1.0


def kind(cmdline: list[str]) -> str:
    line = " ".join(cmdline)
    for key, label in (("bench serve", "vllm-bench"), (" serve ", "vllm-serve"), ("--master", "tokenswarm-master"),
                       ("--worker", "tokenswarm-worker"), ("tokenswarm", "tokenswarm")):
        if key in line:
            return label
    return ""


def tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.Error:
        return set()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--interval", type=float, default=2.0)
    a = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    me = psutil.Process()
    with open(a.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "pid", "ppid", "role", "kind", "name", "cpu", "cpu_pct", "top_thread_pct", "threads",
                    "rss_mb"])
        last: dict[int, tuple[float, dict[int, float]]] = {}  # pid -> (total cpu s, {tid: cpu s})
        t_last = time.monotonic()
        while not stop:
            time.sleep(a.interval)
            now, t_now = time.time(), time.monotonic()
            span = max(t_now - t_last, 1e-3)
            t_last = t_now
            server = tree(a.server_pid) if a.server_pid else set()
            seen: dict[int, tuple[float, dict[int, float]]] = {}
            for p in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times", "num_threads", "memory_info"]):
                if p.pid == me.pid:
                    continue
                try:
                    ct = p.info["cpu_times"]
                    total = ct.user + ct.system
                    threads = {t.id: t.user_time + t.system_time for t in p.threads()}
                    affinity = p.cpu_affinity()
                except (psutil.Error, TypeError, AttributeError):
                    continue
                seen[p.pid] = (total, threads)
                if p.pid not in last:
                    continue
                pct = (total - last[p.pid][0]) / span * 100.0
                if pct < MIN_PCT:
                    continue
                prev = last[p.pid][1]
                top = max((v - prev.get(tid, 0.0) for tid, v in threads.items()), default=0.0) / span * 100.0
                cpus = f"{min(affinity)}-{max(affinity)}" if affinity else ""
                rss = p.info["memory_info"].rss / 2**20 if p.info["memory_info"] else 0.0
                w.writerow([f"{now:.1f}", p.pid, p.info["ppid"], "server" if p.pid in server else "client",
                            kind(p.info["cmdline"] or []), (p.info["name"] or "")[:40], cpus, f"{pct:.1f}",
                            f"{top:.1f}", p.info["num_threads"], f"{rss:.0f}"])
            fh.flush()
            last = seen
    return 0


if __name__ == "__main__":
    sys.exit(main())
