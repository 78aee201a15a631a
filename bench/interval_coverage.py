"""How often the report's 95 % intervals cover the truth, and how often compare's verdicts are right.

    .venv/bin/python bench/interval_coverage.py                      # 400 levels each way, ~1 min
    .venv/bin/python bench/interval_coverage.py --levels 1000 --seconds 60

Levels come from :func:`tokenswarm.report.synthetic.stochastic_level`: open-loop Poisson sends whose TTFT and
TPOT follow stated lognormal distributions, the server's state (an Ornstein-Uhlenbeck process) making
neighbouring requests alike. Each level goes through the report's own :func:`tokenswarm.report.levels.level_stats`;
a figure's interval covers when the true value (:func:`tokenswarm.report.synthetic.stochastic_truth`) lies in
it. Printed per figure: the share of levels whose interval covered the truth, and the share whose interval
had a bound the data could not give (a p99's upper bound from too few requests), for dependent requests, for
independent ones, and, as the method's reason to be, for a naive interval that treats dependent requests as
independent. Then compare's verdicts (:mod:`tokenswarm.report.verdicts`) on pairs of levels: identical engines,
and engines whose TPOT differs by ``--apart`` (5 %). Figures only; the tests assert the bounds.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from tokenswarm.report import intervals, verdicts
from tokenswarm.report.intervals import Interval, ci_columns
from tokenswarm.report.levels import level_stats
from tokenswarm.report.synthetic import stochastic_level, stochastic_truth

FIGURES = ("ttft_mean_ms", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_mean_ms", "tpot_p50_ms",
           "tpot_p90_ms", "itl_p50_ms", "request_throughput_req_s", "output_throughput_tok_s")


def coverage(levels: int, seconds: float, sigma_state: float, naive: bool = False, seed0: int = 0
             ) -> dict[str, tuple[float, float]]:
    """Per figure: (share covered, share with an unknown bound) over ``levels`` seeded levels."""
    truth = stochastic_truth(sigma_state=sigma_state)
    covered = {f: 0 for f in FIGURES}
    unknown = {f: 0 for f in FIGURES}
    for i in range(levels):
        df, w = stochastic_level(seed0 + i, seconds=seconds, sigma_state=sigma_state)
        row = level_stats(df, [w]).iloc[0]
        for f in FIGURES:
            lo, hi = ci_columns(f)
            low, high = float(row[lo]), float(row[hi])
            if naive and f.endswith("_ms") and "_mean_" in f:  # the i.i.d. interval: sd / sqrt(n)
                sample = df[df["start_time"] >= w.start][f.replace("_mean_ms", "_ms")].to_numpy()
                half = 1.96 * sample.std(ddof=1) / math.sqrt(sample.size)
                low, high = sample.mean() - half, sample.mean() + half
            if math.isnan(low) or math.isnan(high):
                unknown[f] += 1
            elif low <= truth[f] <= high:
                covered[f] += 1
    return {f: (covered[f] / levels, unknown[f] / levels) for f in FIGURES}


def verdict_rates(pairs: int, seconds: float, apart: float, sigma_state: float = 0.0, seed0: int = 10_000
                  ) -> dict[str, dict[str, float]]:
    """Shares of each verdict on TPOT mean and TTFT p50 for identical engines and for TPOT ``apart``."""
    out: dict[str, dict[str, float]] = {}
    for label, scale in (("identical", 1.0), (f"TPOT {apart:+.0%}", 1.0 + apart)):
        counts: dict[str, dict[str, int]] = {"tpot_mean_ms": {}, "ttft_p50_ms": {}}
        for i in range(pairs):
            a_df, a_w = stochastic_level(seed0 + 2 * i, seconds=seconds, sigma_state=sigma_state)
            b_df, b_w = stochastic_level(seed0 + 2 * i + 1, seconds=seconds, scale_tpot=scale,
                                         sigma_state=sigma_state)
            a, b = level_stats(a_df, [a_w]).iloc[0], level_stats(b_df, [b_w]).iloc[0]
            for f in counts:
                lo, hi = ci_columns(f)
                v = verdicts.compare_figures(Interval(a[f], a[lo], a[hi]), Interval(b[f], b[lo], b[hi]), True,
                                             int(min(a["completed"], b["completed"])))
                counts[f][v.verdict] = counts[f].get(v.verdict, 0) + 1
        for f, c in counts.items():
            out[f"{label}, {f}"] = {k: n / pairs for k, n in sorted(c.items())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=400, help="levels per case (default 400)")
    ap.add_argument("--seconds", type=float, default=30.0, help="each level's window, s (default 30: ~600 requests)")
    ap.add_argument("--apart", type=float, default=0.05, help="TPOT difference of the unequal engines (0.05)")
    args = ap.parse_args()
    t = time.perf_counter()
    print(f"method: {intervals.METHOD}")
    cases = (("dependent requests (state sd 0.3, tau 0.25 s)", 0.3, False), ("independent requests", 0.0, False),
             ("dependent requests, naive i.i.d. interval on the means", 0.3, True))
    for title, sigma, naive in cases:
        res = coverage(args.levels, args.seconds, sigma, naive)
        print(f"\n{title}: coverage of the 95 % interval over {args.levels} levels (unknown bound)")
        for f, (cov, unk) in res.items():
            if naive and "_mean_" not in f:
                continue
            print(f"  {f:28s} {cov:6.3f}   ({unk:.3f})")
    for sigma in (0.0, 0.3):
        print(f"\nverdicts over {args.levels // 2} pairs of levels ({'in' if not sigma else ''}dependent requests)")
        for case, shares in verdict_rates(args.levels // 2, args.seconds, args.apart, sigma).items():
            print(f"  {case:32s} " + ", ".join(f"{k} {v:.3f}" for k, v in shares.items()))
    print(f"\n{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
