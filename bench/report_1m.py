"""Report build time on a large run: 1,000,000 synthetic requests, then `tokenswarm report` on them.

    .venv/bin/python bench/report_1m.py                       # 1M records, 16-64 ITLs per request
    .venv/bin/python bench/report_1m.py --records 200000 --itl 64-256 --phases --keep /tmp/big

It writes a realistic run folder in a temporary directory with
:func:`tokenswarm.report.synthetic.write_run`: 11 closed-loop levels 1..1024
(requests per level follow a throughput curve that saturates at 256 streams,
TTFT growing past it), ~0.2 % failures of three kinds, a few cancelled
requests, an ``itl_ms`` cell per request holding uniformly 16..64 gaps
(``--itl``), SLOs and a warm-up in run.json, then runs :func:`tokenswarm.report.build_report`
in a child process and prints: generation time, file size, build time,
rows/s, and the child's peak RSS (``resource.getrusage``). Figures only; no
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from tokenswarm.report.synthetic import write_run

LEVELS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
CAPACITY = 256  # streams the synthetic engine serves before requests queue


def generate(run_dir: str, n: int, itl_lo: int, itl_hi: int, seed: int = 1) -> dict[str, float]:
    """Write requests.csv and run.json for ``n`` requests into ``run_dir``; returns a few facts."""
    lv = np.array(LEVELS, float)
    share = np.minimum(lv, CAPACITY) ** 0.9  # requests per level follow the throughput curve
    counts = np.floor(n * share / share.sum()).astype(int)
    counts[-1] += n - counts.sum()
    write_run(run_dir, LEVELS, requests_per_level=counts.tolist(), capacity=CAPACITY, itl=(itl_lo, itl_hi),
              fail_share=0.002, cancel_share=0.0005, warmup_s=2.0, slo={"ttft": 2000, "tpot": 100}, seed=seed,
              settings={"knee_pct": 10, "slo_attainment": 0.99})
    path = os.path.join(run_dir, "requests.csv")
    itl = pd.read_csv(path, usecols=["itl_ms"], dtype=str, keep_default_na=False)["itl_ms"]
    n_itl = int(sum(c.count(" ") + 1 for c in itl if c))
    return {"itl_values": n_itl, "bytes": os.path.getsize(path)}


def child(run_dir: str, phases: bool) -> None:
    """Run in a fresh process: time build() (and, with --phases, its parts); print one JSON line."""
    from tokenswarm.report import build_report
    from tokenswarm.report.levels import level_stats, load_requests, windows_from

    out: dict[str, float] = {}
    if phases:
        t = time.perf_counter()
        df = load_requests(os.path.join(run_dir, "requests.csv"))
        out["load_s"] = time.perf_counter() - t
        with open(os.path.join(run_dir, "run.json")) as fh:
            meta = json.load(fh)
        t = time.perf_counter()
        level_stats(df, windows_from(df, meta["timeline"], meta["settings"]["warmup_s"]), slo=meta["settings"]["slo"])
        out["levels_s"] = time.perf_counter() - t
        del df
    t = time.perf_counter()
    build_report(run_dir)
    out["build_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--itl", default="16-64", help="ITL values per request, uniform MIN-MAX (default 16-64)")
    p.add_argument("--phases", action="store_true", help="also time loading and level statistics on their own")
    p.add_argument("--keep", default="", help="write the run folder here and keep it")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.phases)
        return 0
    lo, hi = (int(x) for x in args.itl.split("-"))
    run_dir = args.keep or tempfile.mkdtemp(prefix="tokenswarm-bench-")
    os.makedirs(run_dir, exist_ok=True)
    try:
        t = time.perf_counter()
        facts = generate(run_dir, args.records, lo, hi)
        gen_s = time.perf_counter() - t
        print(f"records: {args.records:,} in {len(LEVELS)} levels ({LEVELS[0]}..{LEVELS[-1]}); "
              f"ITL values per request: uniform {lo}..{hi} (mean {facts['itl_values'] / args.records:.1f}), "
              f"{facts['itl_values']:,} in all")
        print(f"requests.csv: {facts['bytes'] / 1e6:,.0f} MB, generated in {gen_s:.1f} s")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", run_dir] + (["--phases"] if args.phases else [])
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return 1
        figs = json.loads(res.stdout.strip().splitlines()[-1])
        if args.phases:
            print(f"phases: load_requests {figs['load_s']:.2f} s, level_stats {figs['levels_s']:.2f} s")
        print(f"build(): {figs['build_s']:.2f} s, {args.records / figs['build_s']:,.0f} rows/s, "
              f"peak RSS {figs['peak_rss_mb']:,.0f} MB (child process)")
        print(f"run folder: {run_dir}" + ("" if args.keep else " (removed)"))
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
