"""How much delay does the client add? tokenswarm against the simulated engine's ground truth.

Starts the simulated engine with fixed timing and a truth log, runs
``tokenswarm run`` at each concurrency (one process, and a master with local
workers), joins requests.csv with the truth log by request id, and prints:

* TTFT error: measured TTFT minus the engine's own (first write - arrival):
  the delay the client adds, sending and reading; split into its two sides
  (both clocks are this host's): *read side*, the client's first-token time
  minus the engine's first write (what reading the stream adds), and *send
  side*, the engine's arrival minus the client's send (what sending adds, and
  the engine's own delay reading a burst of requests);
* TPOT error: measured TPOT minus the engine's (last - first write) / (n - 1);
* output throughput achieved inside the measurement window vs the ideal
  C * N / (TTFT + (N - 1) * TPOT);
* client CPU (the load-generating processes, per wall second), the worst
  one-second event-loop lag p99 of any of them, and the engine's own schedule
  error (actual minus planned write time).

Where users run: ``--busy N`` starts N spinning processes
(``while True: pass``) on the client's cores for each run; ``--quota CORES``
puts the client in a CPU quota (cgroup v2 ``cpu.max``, else v1
``cpu.cfs_quota_us``, as a Kubernetes CPU limit sets; skipped with the reason
where neither can be made). The self-check's columns: ``>5ms bnd`` is, of
the requests whose read side was off by more than 5 ms, the share whose
requests.csv ``ttft_error_bound_ms`` covers that error; ``exact1ms`` the
share whose bound is at most 1 ms; ``short`` the level's
``load_shortfall_pct``; ``said`` what the self-check flagged (T: timings not
exact, L: load short, S: the old CPU/lag "saturated"; ``-``: nothing).

``--timing read,capture`` runs each level once per timing mode, one after the other in the same sitting
(``--timing capture`` needs root or CAP_NET_RAW); ``captured`` is the share of requests the packet capture
timed (requests.csv ``timing_source``), ``capture CPU`` the cores its reading took (each process prints it at
the end; a master's workers' lines are not collected, so it reads 0 with ``--workers``). The rows measured
read against capture, quiet, beside 2 busy processes, in half a core's quota and at 1024 streams, are in
docs/metrics.md ("--timing capture").

By default the engine runs on one half of the cores and the client on the
other (``--no-pin`` to share), users start over one request's duration (a
steady state; ``--burst`` starts them all at once, so requests end in waves),
and figures leave out the ramp plus one request.

    python bench/client_overhead.py                                   # 64 and 256 users; 1 and 2 workers
    python bench/client_overhead.py --users 1024 --tpot-ms 100 --tokens 64 --workers 2
    make bench ARGS="--users 256 --workers 0 --burst"
    python bench/client_overhead.py --plain      # the plain command, as a user types it (see --plain)
    python bench/client_overhead.py --plain --users 256 --busy 2       # beside 2 busy processes
    python bench/client_overhead.py --plain --users 256 --quota 0.5    # in half a core's quota
    python bench/client_overhead.py --plain --users 256 --busy 2 --timing read,capture  # both timings

It prints figures; nothing here asserts a wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import psutil

from tokenswarm.report import build_report
from tokenswarm.settings import parse_duration
from tokenswarm.simengine import SimProcess

CPUS = sorted(os.sched_getaffinity(0))
ENGINE_CPUS = set(CPUS[: max(1, len(CPUS) // 2)])  # the engine on one half of the cores ...
CLIENT_CPUS = set(CPUS[len(ENGINE_CPUS):]) or ENGINE_CPUS  # ... the client on the other


COVER_TOL_MS = 0.5  # the engine notes its write just before it, the kernel stamps the arrival just after
V1_CPU = "/sys/fs/cgroup/cpu"
V2_ROOT = "/sys/fs/cgroup"


class Quota:
    """A CPU quota of ``cores`` for the client's processes: a cgroup made for the run (v2 ``cpu.max``, else
    v1 ``cpu.cfs_period_us``/``cpu.cfs_quota_us``), removed after. ``why_not`` says why none could be made."""

    def __init__(self, cores: float) -> None:
        self.cores = cores
        self.path = ""
        self.why_not = ""
        name = f"tokenswarm-bench-{os.getpid()}"
        period = 100_000
        errors = []
        v2 = os.path.join(V2_ROOT, "cgroup.controllers")
        controllers = ""
        if os.path.exists(v2):
            with open(v2) as fh:
                controllers = fh.read()
        if "cpu" in controllers.split():
            try:
                path = os.path.join(V2_ROOT, name)
                os.mkdir(path)
                with open(os.path.join(path, "cpu.max"), "w") as fh:
                    fh.write(f"{int(cores * period)} {period}")
                self.path = path
                return
            except OSError as e:
                errors.append(f"cgroup v2: {e.strerror or e}")
        else:
            errors.append("cgroup v2: no cpu controller")
        if os.path.isdir(V1_CPU):
            try:
                path = os.path.join(V1_CPU, name)
                os.mkdir(path)
                with open(os.path.join(path, "cpu.cfs_period_us"), "w") as fh:
                    fh.write(str(period))
                with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as fh:
                    fh.write(str(int(cores * period)))
                self.path = path
                return
            except OSError as e:
                errors.append(f"cgroup v1: {e.strerror or e}")
        else:
            errors.append("cgroup v1: no cpu hierarchy")
        self.why_not = "; ".join(errors)

    def enter(self) -> None:
        """Put the calling process (a child before exec: its children follow) in the quota."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))

    def throttled(self) -> int:
        try:
            with open(os.path.join(self.path, "cpu.stat")) as fh:
                return int(dict(line.split() for line in fh).get("nr_throttled", 0))
        except (OSError, ValueError):
            return -1

    def remove(self) -> None:
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def busy_neighbours(n: int, cpus: set[int]) -> list[subprocess.Popen]:
    """N processes spinning on the client's cores (``python -c 'while True: pass'``)."""
    procs = []
    for _ in range(n):
        p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        os.sched_setaffinity(p.pid, cpus)
        procs.append(p)
    return procs


def said(out: str) -> str:
    """What the self-check flagged, from summary.json: T timings not exact, L load short, S the CPU/lag
    heuristic's "saturated" (builds before the measured verdicts); '-' nothing."""
    try:
        with open(os.path.join(out, "summary.json")) as fh:
            summ = json.load(fh)
    except (OSError, ValueError):
        return "?"
    marks = "".join(m for key, m in (("timing_uncertain_levels", "T"), ("load_short_levels", "L"),
                                      ("client_saturated_levels", "S")) if summ.get(key))
    return marks or "-"


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def capture_cpu(out: str) -> float:
    """CPU seconds the packet captures of a run's processes said they spent (--timing capture), summed."""
    total = 0.0
    for line in out.splitlines():
        if ": packet capture: " in line and " s of CPU" in line:
            total += float(line.rsplit(", ", 1)[1].split(" s of CPU")[0])
    return total


def one(c: int, workers: int, args: argparse.Namespace, workdir: str, timing: str = "read") -> dict[str, float]:
    truth = os.path.join(workdir, f"truth-{c}-{workers}-{timing}.csv")
    out = os.path.join(workdir, f"run-{c}-{workers}-{timing}")
    sim = SimProcess(["--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms), "--truth-log", truth,
                      "--workers", str(args.sim_workers)])
    sim.start()
    if args.pin:
        for pid in [sim.proc.pid] + [c.pid for c in psutil.Process(sim.proc.pid).children(recursive=True)]:
            os.sched_setaffinity(pid, ENGINE_CPUS)
    try:
        request_s = (args.ttft_ms + (args.tokens - 1) * args.tpot_ms) / 1000.0
        # ramped: users start over one request's duration, so their requests do not all end together
        ramp = ["--spawn-rate", f"{c / request_s:.2f}"] if not args.burst else []
        cmd = [sys.executable, "-m", "tokenswarm", "run", "--host", sim.url, "--users", str(c), "--duration",
               args.duration, "--max-tokens", str(args.tokens), "--input-len", str(args.input_len), "--out", out,
               "--workers", str(workers), "--timing", timing, *ramp, *args.extra]
        quota = args.quota_cg

        def prepare() -> None:
            if args.pin:
                os.sched_setaffinity(0, CLIENT_CPUS)
            if quota is not None:
                quota.enter()

        busy = busy_neighbours(args.busy, CLIENT_CPUS if args.pin else set(CPUS))
        throttled0 = quota.throttled() if quota is not None else 0
        cpu0, t0 = child_cpu(), time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=prepare)
        finally:
            for b in busy:
                b.kill()
                b.wait()
        cpu1, t1 = child_cpu(), time.monotonic()
        throttled = (quota.throttled() - throttled0) if quota is not None else 0
        if proc.returncode not in (0, 1):
            print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"tokenswarm run failed with code {proc.returncode}")
    finally:
        sim.stop()
    stats = sim.final_stats()
    request_s = (args.ttft_ms + (args.tokens - 1) * args.tpot_ms) / 1000.0
    warmup = args.warmup if args.warmup >= 0 else (1.0 if args.burst else 0.0) + 2 * request_s
    levels = build_report(out, warmup_s=warmup)
    health = pd.read_csv(os.path.join(out, "client_health.csv"))
    t_first = pd.read_csv(os.path.join(out, "requests.csv"), usecols=["start_time"]).start_time.min()
    health = health[health.time >= t_first + warmup]  # the steady state, as the other figures
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    tr = pd.read_csv(truth)
    j = df[df.status == "ok"].merge(tr, on="request_id", how="inner")
    j = j[j.start_time >= df.start_time.min() + warmup]  # the steady state: after the ramp and warm-up
    true_ttft = (j.first_write - j.arrival) * 1000.0
    read_err = (j.start_time + j.ttft_ms / 1000.0 - j.first_write) * 1000.0
    off = read_err > 5.0
    if "ttft_error_bound_ms" in j.columns:
        bound = j.ttft_error_bound_ms
        covered = float((bound[off] >= read_err[off] - COVER_TOL_MS).mean() * 100) if off.any() else float("nan")
        exact = float((bound <= 1.0).mean() * 100)
    else:  # a build before the bounds
        covered = exact = float("nan")
    short = float(levels.load_shortfall_pct.iloc[0]) if "load_shortfall_pct" in levels.columns else float("nan")
    captured = float((df.timing_source == "capture").mean() * 100) if "timing_source" in df.columns else 0.0
    true_tpot = (j.last_write - j.first_write) * 1000.0 / (j.tokens - 1)
    n = args.tokens
    ideal = c * n / ((args.ttft_ms + (n - 1) * args.tpot_ms) / 1000.0)
    sched = stats.get("schedule_error_ms", {})
    return {
        "users": c,
        "workers": workers,
        "loop_lag_ms": float(health.loop_lag_p99_ms.max()) if len(health) else float("nan"),
        "requests": len(df),
        "joined": len(j),
        "ttft_vs_cfg_p50": pct((j.ttft_ms - args.ttft_ms).to_numpy(), 50),
        "ttft_vs_cfg_p99": pct((j.ttft_ms - args.ttft_ms).to_numpy(), 99),
        "ttft_err_p50": pct((j.ttft_ms - true_ttft).to_numpy(), 50),
        "ttft_err_p99": pct((j.ttft_ms - true_ttft).to_numpy(), 99),
        "read_side_p99": pct(read_err.to_numpy(), 99),
        "off_5ms": int(off.sum()),
        "off_5ms_covered_pct": covered,
        "exact_1ms_pct": exact,
        "load_short_pct": short,
        "said": said(out),
        "throttled": throttled,
        "send_side_p99": pct(((j.arrival - j.start_time) * 1000.0).to_numpy(), 99),
        "tpot_err_p50": pct((j.tpot_ms - true_tpot).to_numpy(), 50),
        "tpot_err_p99": pct((j.tpot_ms - true_tpot).to_numpy(), 99),
        "out_tok_s": float(levels.output_throughput_tok_s.iloc[0]),
        "ideal_tok_s": ideal,
        "client_cpu": (cpu1 - cpu0) / (t1 - t0),
        "timing": timing,
        "captured_pct": captured,
        "capture_cpu": capture_cpu(proc.stdout) / (t1 - t0),
        "sched_p99_ms": sched.get("p99", float("nan")),
        "sched_max_ms": sched.get("max", float("nan")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", default="64,256", help="comma-separated concurrencies (default 64,256; for 1024 "
                   "use a TPOT one core can serve: --tpot-ms 100 --tokens 64)")
    p.add_argument("--duration", default="30s", help="per concurrency (default 30s)")
    p.add_argument("--warmup", type=float, default=-1.0, help="seconds left out of every figure (default: the "
                   "ramp plus one request)")
    p.add_argument("--burst", action="store_true", help="start all users at once instead of over one "
                   "request's duration (their requests then end in waves)")
    p.add_argument("--ttft-ms", type=float, default=200.0)
    p.add_argument("--tpot-ms", type=float, default=20.0)
    p.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--workers", default="0,2", help="comma-separated local worker counts to try (0: one "
                   "process; default 0,2)")
    p.add_argument("--sim-workers", type=int, default=1, help="simulated engine processes (SO_REUSEPORT)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the engine and the client to separate cores (pinned by default)")
    p.add_argument("--keep", action="store_true", help="keep the run folders and truth logs")
    p.add_argument("--plain", action="store_true",
                   help="the plain command as a user types it: `tokenswarm run --engine vllm --users 256 --duration "
                        "25s --max-tokens 128` with the default spawn (all at once), nothing pinned, the engine's "
                        "/metrics scraped, every request counted (no warm-up left out); --users/--duration still apply")
    p.add_argument("--busy", type=int, default=0, help="N processes spinning on the client's cores during each run")
    p.add_argument("--quota", type=float, default=0.0, help="a CPU quota of this many cores on the client "
                   "(cgroup v2 cpu.max or v1 cfs quota; skipped with the reason where neither can be made)")
    p.add_argument("--timing", default="read", help="comma-separated --timing modes, each run in turn at every "
                   "level (read, capture; e.g. read,capture for both in the same sitting)")
    p.add_argument("extra", nargs="*", help="more `tokenswarm run` options after --")
    args = p.parse_args()
    args.quota_cg = None
    if args.quota:
        q = Quota(args.quota)
        if not q.path:
            print(f"no CPU quota: {q.why_not}; skipped")
            return
        args.quota_cg = q
    if args.plain:
        args.burst, args.pin, args.warmup, args.workers = True, False, 0.0, "0"
        if args.users == "64,256":
            args.users = "256"
        if args.duration == "30s":
            args.duration = "25s"
        args.input_len = 128
        args.extra = ["--engine", "vllm", *args.extra]
    parse_duration(args.duration)
    workdir = tempfile.mkdtemp(prefix="tokenswarm-bench-")
    pins = (f"engine on CPU {','.join(map(str, sorted(ENGINE_CPUS)))}, client on CPU "
            f"{','.join(map(str, sorted(CLIENT_CPUS)))}" if args.pin else "not pinned")
    where = (f"; beside {args.busy} busy processes" if args.busy else "") + (
        f"; in a CPU quota of {args.quota:g} core ({args.quota_cg.path})" if args.quota_cg else "")
    print(f"engine: TTFT {args.ttft_ms:g} ms, TPOT {args.tpot_ms:g} ms, {args.tokens} tokens; "
          f"{args.duration} per level, {args.workers or 'no'} workers; {pins}{where}; files in {workdir}")
    head = (f"{'users':>6} {'workers':>7} {'reqs':>6} {'TTFT err p50/p99 ms':>20} {'read/send side p99':>19} "
            f"{'TPOT err p50/p99 ms':>20} {'out tok/s':>10} {'% ideal':>8} {'client CPU':>10} {'loop lag ms':>11} "
            f"{'engine sched p99/max ms':>24} {'>5ms n/bnd':>11} {'exact1ms':>8} {'short':>6} {'said':>4} "
            f"{'timing':>7} {'captured':>8} {'capture CPU':>11}")
    print(head)
    for c in (int(x) for x in args.users.split(",")):
        for w, timing in ((int(x), t) for x in str(args.workers).split(",") for t in args.timing.split(",")):
            r = one(c, w, args, workdir, timing)
            print(f"{r['users']:>6} {r['workers']:>7} {r['requests']:>6} "
                  f"{r['ttft_err_p50']:>9.2f}/{r['ttft_err_p99']:<10.2f}{r['read_side_p99']:>9.2f}/{r['send_side_p99']:<9.2f}"
                  f"{r['tpot_err_p50']:>9.3f}/{r['tpot_err_p99']:<10.3f}"
                  f"{r['out_tok_s']:>10.0f} {100 * r['out_tok_s'] / r['ideal_tok_s']:>7.1f}% {r['client_cpu']:>9.2f}c "
                  f"{r['loop_lag_ms']:>11.1f} {r['sched_p99_ms']:>11.2f}/{r['sched_max_ms']:<8.2f}"
                  f"{r['off_5ms']:>5}/{r['off_5ms_covered_pct']:>5.1f}% {r['exact_1ms_pct']:>7.1f}% "
                  f"{r['load_short_pct']:>5.1f}% {r['said']:>4} {r['timing']:>7} {r['captured_pct']:>7.1f}% "
                  f"{r['capture_cpu']:>10.3f}c"
                  + (f"  throttled {r['throttled']}x" if args.quota_cg else ""), flush=True)
    if args.quota_cg is not None:
        args.quota_cg.remove()
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
