"""How much delay does the client add? tokenswarm against the simulated engine's ground truth.

Starts the simulated engine with fixed timing and a truth log, runs
``tokenswarm run`` at each concurrency, joins requests.csv with the truth log
by request id, and prints per concurrency:

* TTFT error: measured TTFT minus configured TTFT, and minus the engine's own
  TTFT (first write - arrival; the engine's lateness taken out);
* TPOT error: measured TPOT minus the engine's (last - first write) / (n - 1);
* output throughput achieved inside the measurement window vs the ideal
  C * N / (TTFT + (N - 1) * TPOT);
* client CPU (the load-generating processes, per wall second) and the engine's schedule error.

    python bench/client_overhead.py --users 64,256 --duration 20s
    make bench ARGS="--users 1024 --tpot-ms 100 --tokens 64"

It prints figures; nothing here asserts a wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from tokenswarm.report import build
from tokenswarm.settings import parse_duration
from tokenswarm.simengine import SimProcess


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def one(c: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    truth = os.path.join(workdir, f"truth-{c}.csv")
    out = os.path.join(workdir, f"run-{c}")
    sim = SimProcess(["--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms), "--truth-log", truth])
    sim.start()
    try:
        cmd = [sys.executable, "-m", "tokenswarm", "run", "--host", sim.url, "--users", str(c), "--duration",
               args.duration, "--max-tokens", str(args.tokens), "--input-len", str(args.input_len), "--out", out,
               *(["--workers", str(args.workers)] if args.workers else []), *args.extra]
        cpu0, t0 = child_cpu(), time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        cpu1, t1 = child_cpu(), time.monotonic()
        if proc.returncode not in (0, 1):
            print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"tokenswarm run failed with code {proc.returncode}")
        stats = sim.stats()
    finally:
        sim.stop()
    levels = build(out, warmup_s=args.warmup)
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    tr = pd.read_csv(truth)
    j = df[df.status == "ok"].merge(tr, on="request_id", how="inner")
    true_ttft = (j.first_write - j.arrival) * 1000.0
    true_tpot = (j.last_write - j.first_write) * 1000.0 / (j.tokens - 1)
    n = args.tokens
    ideal = c * n / ((args.ttft_ms + (n - 1) * args.tpot_ms) / 1000.0)
    sched = stats.get("schedule_error_ms", {})
    return {
        "users": c,
        "requests": len(df),
        "joined": len(j),
        "ttft_vs_cfg_p50": pct((j.ttft_ms - args.ttft_ms).to_numpy(), 50),
        "ttft_vs_cfg_p99": pct((j.ttft_ms - args.ttft_ms).to_numpy(), 99),
        "ttft_err_p50": pct((j.ttft_ms - true_ttft).to_numpy(), 50),
        "ttft_err_p99": pct((j.ttft_ms - true_ttft).to_numpy(), 99),
        "tpot_err_p50": pct((j.tpot_ms - true_tpot).to_numpy(), 50),
        "tpot_err_p99": pct((j.tpot_ms - true_tpot).to_numpy(), 99),
        "out_tok_s": float(levels.output_throughput.iloc[0]),
        "ideal_tok_s": ideal,
        "client_cpu": (cpu1 - cpu0) / (t1 - t0),
        "sched_p99_ms": sched.get("p99", float("nan")),
        "sched_max_ms": sched.get("max", float("nan")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", default="64,256", help="comma-separated concurrencies (default 64,256)")
    p.add_argument("--duration", default="20s", help="per concurrency (default 20s)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds left out of the throughput window")
    p.add_argument("--ttft-ms", type=float, default=200.0)
    p.add_argument("--tpot-ms", type=float, default=20.0)
    p.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="local worker processes (0: one process)")
    p.add_argument("--keep", action="store_true", help="keep the run folders and truth logs")
    p.add_argument("extra", nargs="*", help="more `tokenswarm run` options after --")
    args = p.parse_args()
    parse_duration(args.duration)
    workdir = tempfile.mkdtemp(prefix="tokenswarm-bench-")
    print(f"engine: TTFT {args.ttft_ms:g} ms, TPOT {args.tpot_ms:g} ms, {args.tokens} tokens; "
          f"{args.duration} per level, {args.workers or 'no'} workers; files in {workdir}")
    head = (f"{'users':>6} {'reqs':>6} {'TTFT-cfg p50/p99 ms':>20} {'TTFT err p50/p99 ms':>20} "
            f"{'TPOT err p50/p99 ms':>20} {'out tok/s':>10} {'% ideal':>8} {'client CPU':>10} "
            f"{'sched p99/max ms':>17}")
    print(head)
    for c in (int(x) for x in args.users.split(",")):
        r = one(c, args, workdir)
        print(f"{r['users']:>6} {r['requests']:>6} {r['ttft_vs_cfg_p50']:>9.2f}/{r['ttft_vs_cfg_p99']:<10.2f}"
              f"{r['ttft_err_p50']:>9.2f}/{r['ttft_err_p99']:<10.2f}{r['tpot_err_p50']:>9.3f}/{r['tpot_err_p99']:<10.3f}"
              f"{r['out_tok_s']:>10.0f} {100 * r['out_tok_s'] / r['ideal_tok_s']:>7.1f}% {r['client_cpu']:>9.2f}c "
              f"{r['sched_p99_ms']:>8.2f}/{r['sched_max_ms']:<8.2f}", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
