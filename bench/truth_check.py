"""Are the published numbers true? tokenswarm's per-level figures against an exact-timing engine's truth log.

Starts the simulated engine with fixed timing and a truth log (every request's arrival, first and last
write, tokens), then:

1. a concurrency sweep (``--levels``, all users of a level started at once, so requests run in waves as
   they do against such a server): for each level, the request rate implied by each per-level column
   (``request_throughput_req_s``, ``input_throughput_tok_s`` / mean input length, ``output_throughput_tok_s`` / mean
   output length) beside the truth: the engine's own token writes inside the level's measurement window
   per second, divided by the tokens per request. With fixed lengths the three columns must agree with
   each other and with the truth;
2. single runs in vLLM bench's shape (``tokenswarm run --users C --spawn-rate C --requests N``, vLLM's
   ``--max-concurrency C --num-prompts N``): output and request throughput beside the truth, the engine's
   output tokens over the span from the first request's arrival to the last token;
3. for both, TTFT, TPOT, ITL and E2E (means) beside the engine's own: first write minus arrival,
   (last - first write) / (tokens - 1), the same per gap, last write minus arrival.

``--check`` exits 1 when a throughput figure is more than 1 % off the truth, a TPOT or ITL mean more than
0.1 %, E2E more than 0.25 % (it carries the TTFT's few ms of send and read overhead: 2-3 ms when this
2-core machine is busy) or TTFT more than 2 % (well under the 4-12 % the peers' own send overhead adds at
this TTFT). Nothing else here asserts a time; it prints figures. ``--again DIR`` rebuilds the reports of
a kept folder with the code now installed: the same runs read before and after a change to the report.

    python bench/truth_check.py                      # levels 1,4,16 of 16 s; single runs at 1, 4, 16 users
    python bench/truth_check.py --levels 4,16 --level-duration 16s --runs 16 --check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm.report.analysis import level_warmups, read_meta
from tokenswarm.report.build import build_report
from tokenswarm.report.levels import load_requests, windows_from
from tokenswarm.simengine import SimProcess

THROUGHPUT_TOL = 0.01  # the README's "throughput within 1 %"
TIMING_TOL = 0.001  # "TPOT and ITL within 0.1 %"
E2E_TOL = 0.0025
TTFT_TOL = 0.02


def truth_tokens_in(tr: pd.DataFrame, lo: float, hi: float) -> float:
    """The engine's token writes inside [lo, hi): token k of a request at first + k * (last - first) / (n - 1)."""
    f, e, n = tr.first_write.to_numpy(), tr.last_write.to_numpy(), tr.tokens.to_numpy().astype(float)
    d = np.where(n > 1, (e - f) / np.maximum(n - 1, 1), np.inf)
    k_lo = np.where(np.isfinite(d), np.ceil((lo - f) / d), np.where(f >= lo, 0, 1))
    k_hi = np.where(np.isfinite(d), np.ceil((hi - f) / d), np.where(f >= hi, 0, 1))
    return float((np.clip(k_hi, 0, n) - np.clip(k_lo, 0, n)).clip(0).sum())


def timing_errors(df: pd.DataFrame, tr: pd.DataFrame) -> dict[str, float]:
    """Relative error of our means against the engine's, over ok requests joined by id."""
    j = df[df.status == "ok"].merge(tr, on="request_id", how="inner")
    if j.empty:
        return {}
    itl = np.concatenate([np.array(s.split(), float) for s in j.itl_ms.fillna("") if s])
    true = {
        "ttft": ((j.first_write - j.arrival) * 1000).mean(),
        "tpot": ((j.last_write - j.first_write) * 1000 / (j.tokens - 1)).mean(),
        "e2e": ((j.last_write - j.arrival) * 1000).mean(),
    }
    true["itl"] = float(((j.last_write - j.first_write) * 1000).sum() / (j.tokens - 1).sum())
    ours = {"ttft": j.ttft_ms.mean(), "tpot": j.tpot_ms.mean(), "e2e": j.e2e_ms.mean(), "itl": itl.mean()}
    return {k: float(ours[k] / true[k] - 1.0) for k in true} | {f"{k}_ms": float(ours[k]) for k in ours}


def run_cli(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "tokenswarm", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"tokenswarm {args[0]} failed with code {proc.returncode}")


def sweep(args: argparse.Namespace, workdir: str) -> list[dict[str, Any]]:
    truth = os.path.join(workdir, "truth-sweep.csv")
    out = os.path.join(workdir, "sweep")
    if not args.again:
        with SimProcess(["--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms), "--truth-log", truth]
                        ) as sim:
            run_cli(["sweep", "--host", sim.url, "--levels", args.levels, "--level-duration", args.level_duration,
                     "--max-tokens", str(args.tokens), "--input-len", str(args.input_len), "--out", out,
                     *args.extra])
    levels = build_report(out, with_plots=False)
    meta = read_meta(out)
    s = meta["settings"]
    df = load_requests(os.path.join(out, "requests.csv"))
    windows = windows_from(df, meta["timeline"], float(s.get("warmup_s") or 0), level_warmups(s))
    tr = pd.read_csv(truth)
    full = pd.read_csv(os.path.join(out, "requests.csv"))
    rows = []
    for w, lv in zip(windows, levels.to_dict("records")):
        secs = w.end - w.start
        truth_rps = truth_tokens_in(tr, w.start, w.end) / secs / args.tokens
        mine = full[(full.level == w.level) & (full.start_time >= w.start)]
        rows.append({
            "level": w.level, "window_s": secs,
            "lifetimes": lv.get("window_lifetimes", float("nan")),
            "req": lv["request_throughput_req_s"], "input": lv["input_throughput_tok_s"] / lv["mean_input_tokens"],
            "output": lv["output_throughput_tok_s"] / lv["mean_output_tokens"], "truth": truth_rps,
            **timing_errors(mine, tr),
        })
    return rows


def single(c: int, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    truth = os.path.join(workdir, f"truth-run-{c}.csv")
    out = os.path.join(workdir, f"run-{c}")
    n = c * args.waves
    if not args.again:
        with SimProcess(["--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms), "--truth-log", truth]
                        ) as sim:
            run_cli(["run", "--host", sim.url, "--users", str(c), "--spawn-rate", str(c), "--requests", str(n),
                     "--max-tokens", str(args.tokens), "--input-len", str(args.input_len), "--out", out,
                     *args.extra])
    lv = build_report(out, with_plots=False).iloc[0]
    tr = pd.read_csv(truth)
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    tr = tr[tr.request_id.isin(df.request_id)]  # not the preflight request
    span = tr.last_write.max() - tr.arrival.min()
    return {"users": c, "requests": len(df), "out": lv["output_throughput_tok_s"], "truth_out": tr.tokens.sum() / span,
            "req": lv["request_throughput_req_s"], "truth_req": len(tr) / span, **timing_errors(df, tr)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,4,16", help="sweep levels (default 1,4,16; '' to skip the sweep)")
    p.add_argument("--level-duration", default="16s", help="per level (default 16s: about 6 request lifetimes "
                   "in each window after the 20 %% warm-up)")
    p.add_argument("--runs", default="1,4,16", help="users of the single runs (default 1,4,16; '' to skip)")
    p.add_argument("--waves", type=int, default=10, help="single runs send users x this many requests")
    p.add_argument("--ttft-ms", type=float, default=150.0)
    p.add_argument("--tpot-ms", type=float, default=15.0)
    p.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--check", action="store_true", help="exit 1 when a figure is outside the README's bounds")
    p.add_argument("--keep", action="store_true", help="keep the run folders and truth logs")
    p.add_argument("--again", metavar="DIR", default="", help="no new runs: rebuild the reports of a folder kept "
                   "with --keep and print its figures (the same runs, before and after a change to the report)")
    p.add_argument("extra", nargs="*", help="more `tokenswarm` options after --")
    args = p.parse_args()
    workdir = args.again or tempfile.mkdtemp(prefix="tokenswarm-numbers-")
    life = (args.ttft_ms + (args.tokens - 1) * args.tpot_ms) / 1000.0
    print(f"engine: TTFT {args.ttft_ms:g} ms, TPOT {args.tpot_ms:g} ms, {args.tokens} tokens (one request "
          f"{life:.3f} s); files in {workdir}")
    bad: list[str] = []

    def judge(what: str, err: float, tol: float) -> str:
        if not np.isfinite(err) or abs(err) > tol:
            bad.append(f"{what}: {err:+.3%} (bound {tol:.1%})")
            return "!"
        return " "

    if args.levels:
        print("\nsweep: req/s implied by each per-level column, and the truth (engine token writes in the window "
              "/ tokens per request)")
        print(f"{'level':>6} {'window s':>9} {'lifetimes':>9} {'Req/s':>8} {'in/len':>8} {'out/len':>8} "
              f"{'truth':>8} {'worst':>8}   {'TTFT':>7} {'TPOT':>7} {'ITL':>7} {'E2E':>7}  (mean, vs truth)")
        for r in sweep(args, workdir):
            worst = max((r[k] / r["truth"] - 1 for k in ("req", "input", "output")), key=abs)
            mark = judge(f"level {r['level']:g} throughput", worst, THROUGHPUT_TOL)
            marks = [judge(f"level {r['level']:g} {k.upper()}", r.get(k, np.nan), tol) for k, tol in
                     (("ttft", TTFT_TOL), ("tpot", TIMING_TOL), ("itl", TIMING_TOL), ("e2e", E2E_TOL))]
            print(f"{r['level']:>6g} {r['window_s']:>9.2f} {r['lifetimes']:>9.2f} {r['req']:>8.3f} "
                  f"{r['input']:>8.3f} {r['output']:>8.3f} {r['truth']:>8.3f} {worst:>+7.2%}{mark}  "
                  + " ".join(f"{r.get(k, np.nan):>+6.2%}{m}" for k, m in zip(("ttft", "tpot", "itl", "e2e"), marks)),
                  flush=True)
    if args.runs:
        print("\nsingle runs (--users C --spawn-rate C --requests N): throughput vs the truth (engine tokens / "
              "first arrival .. last token)")
        print(f"{'users':>6} {'reqs':>5} {'out tok/s':>10} {'truth':>10} {'err':>8} {'Req/s':>7} {'truth':>7} "
              f"{'err':>8}   {'TTFT':>7} {'TPOT':>7} {'ITL':>7} {'E2E':>7}")
        for c in (int(x) for x in args.runs.split(",")):
            r = single(c, args, workdir)
            e_out, e_req = r["out"] / r["truth_out"] - 1, r["req"] / r["truth_req"] - 1
            m1 = judge(f"run {c} output throughput", e_out, THROUGHPUT_TOL)
            m2 = judge(f"run {c} request throughput", e_req, THROUGHPUT_TOL)
            marks = [judge(f"run {c} {k.upper()}", r.get(k, np.nan), tol) for k, tol in
                     (("ttft", TTFT_TOL), ("tpot", TIMING_TOL), ("itl", TIMING_TOL), ("e2e", E2E_TOL))]
            print(f"{c:>6} {r['requests']:>5} {r['out']:>10.1f} {r['truth_out']:>10.1f} {e_out:>+7.2%}{m1} "
                  f"{r['req']:>7.3f} {r['truth_req']:>7.3f} {e_req:>+7.2%}{m2}  "
                  + " ".join(f"{r.get(k, np.nan):>+6.2%}{m}" for k, m in zip(("ttft", "tpot", "itl", "e2e"), marks)),
                  flush=True)
    if not args.keep and not args.again:
        shutil.rmtree(workdir, ignore_errors=True)
    if bad:
        print("\noutside the bounds: " + "; ".join(bad))
        if args.check:
            raise SystemExit(1)
    print(json.dumps({"outside_bounds": len(bad)}))


if __name__ == "__main__":
    main()
