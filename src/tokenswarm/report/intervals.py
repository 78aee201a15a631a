"""95 % confidence intervals for a level's figures, from one run: batch means over time blocks.

The requests of one level are not independent: neighbours in time share the server's state (its batch, its
queue, its cache), so an interval that treats them as a random sample is too narrow. The method here is the
standard one of steady-state simulation output analysis, **non-overlapping batch means** (Law, *Simulation
Modeling and Analysis*, 5th ed., 2015, section 9.5.3; Schmeiser, "Batch size effects in the analysis of
simulation output", *Operations Research* 30(3), 1982): the level's measurement window is cut into ``k``
consecutive time blocks of equal length, a figure is computed in each block, and the block figures, far
enough apart to be nearly independent, give the spread:

* **Means** (TTFT, TPOT, ITL, E2E): each request (each inter-token gap, for ITL) belongs to the block in
  which its request was sent; the interval is ``mean +/- t(k-1) * sd(block means) / sqrt(k)``.
* **Rates** (request, input, output, total throughput, goodput): each block's rate with the report's own
  window weights (:func:`tokenswarm.report.levels.window_weights`: a request counts in a block for the share
  of its first..last token span inside it); the blocks' rates average to the window's rate exactly.
* **Percentiles** (p50, p90, p99): Woodruff's interval (Woodruff, "Confidence intervals for medians and other
  position measures", *JASA* 47, 1952): the standard error ``se`` of the empirical distribution function at
  the estimated percentile ``q`` is taken from the batch means of the indicator ``1{x <= q}`` (so it carries
  the dependence), and the interval is ``[Q(p - t*se), Q(p + t*se)]``, the sample's own percentiles at
  those probabilities. A bound beyond the data (``p + t*se > 1``, too few requests for a p99) is unknown
  (NaN), not invented.
* **Shares** (SLO attainment): batch means of the indicator "met every SLO".

Blocks: one mean request lifetime (E2E) long at least, so that one block's requests are mostly not the next
one's, and at most :data:`MAX_BLOCKS` (Schmeiser: 10 to 30 batches); at least :data:`MIN_BLOCKS`. Fewer
blocks widen the interval honestly through Student's t with ``k - 1`` degrees of freedom. Where requests
happen to be less alike across blocks than independent ones would be (batch variance below the i.i.d.
variance, which a handful of blocks can show by chance), the i.i.d. standard error is used instead: an
interval is never narrower than the one for independent requests.

Coverage against known truth (the simulated engine's stochastic mode, whose TTFT and TPOT distributions are
stated): tests/unit/report/test_intervals.py and tests/integration/test_intervals_live.py measure it.
Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_BLOCKS = 20
MIN_BLOCKS = 2
LEVEL = 0.95
METHOD = ("batch means over time blocks (Law 2015, section 9.5.3; Schmeiser 1982); percentiles by Woodruff's "
          "interval (1952) with a batch-means standard error")

#: Student's t, 97.5th percentile, by degrees of freedom (two-sided 95 %)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """Student's t 97.5th percentile with ``df`` degrees of freedom (a table to 30, then the Cornish-Fisher
    expansion, within 0.001 of the exact value)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """A figure and its 95 % interval; a bound that the data cannot give is NaN."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def relative_half_width(self) -> float:
        """Half the width as a share of the estimate (NaN when unknown or the estimate is 0)."""
        if not (self.estimate and math.isfinite(self.estimate)):
            return math.nan
        return abs(self.half_width / self.estimate)


NONE = Interval(math.nan, math.nan, math.nan)


def block_count(window_s: float, lifetime_s: float) -> int:
    """How many blocks a window of ``window_s`` holds, each at least one request lifetime (``lifetime_s``, the
    mean E2E) long: between MIN_BLOCKS and MAX_BLOCKS."""
    if not (window_s > 0):
        return MIN_BLOCKS
    if not (lifetime_s > 0) or not math.isfinite(lifetime_s):
        return MAX_BLOCKS
    return int(min(MAX_BLOCKS, max(MIN_BLOCKS, math.floor(window_s / lifetime_s))))


def block_of(times: np.ndarray, lo: float, hi: float, k: int) -> np.ndarray:
    """The block (0..k-1) of each time in the window [lo, hi) cut into ``k`` equal blocks; times before ``lo``
    go to block 0, after ``hi`` to block k-1 (a request sent at the very end, stamped with the level)."""
    times = np.asarray(times, float)
    if not hi > lo:
        return np.zeros(times.shape, dtype=np.int64)
    b = np.floor((times - lo) / (hi - lo) * k)
    return np.clip(np.nan_to_num(b, nan=0.0), 0, k - 1).astype(np.int64)


MAX_LAG1 = 0.8  # the blocks' lag-1 correlation taken into account at most
LAG1_MIN_BLOCKS = 10  # ... and only with this many blocks: fewer give a lag-1 estimate too noisy to act on


def lag1(v: np.ndarray) -> float:
    """The lag-1 autocorrelation of a series, corrected for its small-sample bias (+1/k); 0 for fewer than 4."""
    if v.size < 4:
        return 0.0
    d = v - v.mean()
    den = float((d * d).sum())
    if den <= 0:
        return 0.0
    return float((d[:-1] * d[1:]).sum() / den) + 1.0 / v.size


def _spread_se(block_values: np.ndarray) -> float:
    """Standard error of the mean of ``block_values`` (NaN with fewer than two), inflated by
    ``sqrt((1 + r) / (1 - r))`` when neighbouring blocks still correlate (``r``: their lag-1 autocorrelation,
    when positive: the variance of a sum of AR(1) terms; Law 2015, section 9.5.3, on batches too short), from
    :data:`LAG1_MIN_BLOCKS` blocks on (with fewer, Student's t's few degrees of freedom carry the doubt)."""
    v = block_values[~np.isnan(block_values)]
    if v.size < 2:
        return math.nan
    se = float(v.std(ddof=1) / math.sqrt(v.size))
    if v.size < LAG1_MIN_BLOCKS:
        return se
    r = min(max(lag1(v), 0.0), MAX_LAG1)
    return se * math.sqrt((1 + r) / (1 - r))


def _block_means(values: np.ndarray, blocks: np.ndarray, k: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Per block (that has any), the mean of its ``values``; ``counts``: values per block, when known."""
    if counts is None:
        counts = np.bincount(blocks, minlength=k)
    sums = np.bincount(blocks, weights=values, minlength=k)
    used = counts > 0
    return sums[used] / counts[used]


class Units:
    """Which values belong together: ``blocks`` gives each unit's block, and each unit holds ``counts`` of the
    values, in order (a request's inter-token gaps are one unit: they move to a block together). Without
    ``counts``, one value per unit."""

    def __init__(self, blocks: np.ndarray, k: int, counts: np.ndarray | None = None) -> None:
        self.k = k
        if counts is not None:
            keep = counts > 0
            self.blocks, self.counts = blocks[keep], counts[keep]
            self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)
        else:
            self.blocks, self.counts, self.starts = blocks, None, None
        self.per_block = np.bincount(self.blocks, weights=self.counts, minlength=k) if counts is not None \
            else np.bincount(self.blocks, minlength=k)

    def block_means(self, values: np.ndarray) -> np.ndarray:
        """Per block (that has values), the mean of ``values`` (aligned with the units' values)."""
        if self.counts is None:
            return _block_means(values, self.blocks, self.k, self.per_block)
        per_unit = np.add.reduceat(values, self.starts) if values.size else np.zeros(0)
        return _block_means(per_unit, self.blocks, self.k, self.per_block)

    def used_blocks(self) -> int:
        return int((self.per_block > 0).sum())


def mean_interval(values: np.ndarray, blocks: np.ndarray | Units, k: int) -> Interval:
    """The mean of ``values`` with its batch-means interval; ``blocks``: each value's block (0..k-1), or the
    :class:`Units` the values belong to (then NaN values are not allowed)."""
    values = np.asarray(values, float)
    units = blocks if isinstance(blocks, Units) else None
    if units is None:
        keep = ~np.isnan(values)
        values = values[keep]
        units = Units(np.asarray(blocks)[keep], k)
    if not values.size:
        return NONE
    mean = float(values.mean())
    means = units.block_means(values)
    se = _spread_se(means)
    if values.size > 1:
        se = max(se if math.isfinite(se) else 0.0, float(values.std(ddof=1) / math.sqrt(values.size)))
    if not math.isfinite(se) or means.size < 2:
        return Interval(mean, math.nan, math.nan)
    t = t975(means.size - 1)
    return Interval(mean, mean - t * se, mean + t * se)


def percentile_intervals(values: np.ndarray, blocks: np.ndarray | Units, k: int, ps: tuple[float, ...],
                         estimates: list[float] | None = None) -> list[Interval]:
    """The percentiles ``ps`` (0-100) of ``values`` (numpy's linear interpolation, as the report's; or the
    ``estimates`` already computed) with Woodruff intervals whose standard error comes from batch means of
    ``1{x <= q}``. ``blocks``: each value's block, or the :class:`Units` the values belong to."""
    values = np.asarray(values, float)
    units = blocks if isinstance(blocks, Units) else None
    if units is None:
        keep = ~np.isnan(values)
        values = values[keep]
        units = Units(np.asarray(blocks)[keep], k)
    n = values.size
    if not n:
        return [NONE for _ in ps]
    qs_hat = list(estimates) if estimates is not None else [float(q) for q in np.percentile(values, ps)]
    nblocks = units.used_blocks()
    t = t975(nblocks - 1)
    bounds: list[tuple[float, float]] = []
    for p, q in zip(ps, qs_hat):
        frac = p / 100.0
        se = _spread_se(units.block_means((values <= q).astype(float)))
        se = max(se if math.isfinite(se) else 0.0, math.sqrt(frac * (1 - frac) / n))
        if nblocks < 2:
            se = math.nan
        bounds.append((frac - t * se, frac + t * se))
    probs = [x for b in bounds for x in b]
    finite = all(math.isfinite(x) for x in probs)
    qs = np.percentile(values, [min(max(x, 0.0), 1.0) * 100.0 for x in probs]) if finite else None
    out = []
    for i, (q, (lo_p, hi_p)) in enumerate(zip(qs_hat, bounds)):
        if qs is None:
            out.append(Interval(float(q), math.nan, math.nan))
            continue
        low = float(qs[2 * i]) if lo_p >= 0 else math.nan
        high = float(qs[2 * i + 1]) if hi_p <= 1 else math.nan
        out.append(Interval(float(q), low, high))
    return out


def wilson(share: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval of a share ``share`` of ``n`` independent trials (Wilson, "Probable inference,
    the law of succession, and statistical inference", JASA 22, 1927): unlike share +/- z * se it is not a
    point at 0 or 1, so 40 hits of 40 bound the share at 0.91, not 1."""
    if n <= 0:
        return math.nan, math.nan
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def share_interval(hits: np.ndarray, blocks: np.ndarray, k: int) -> Interval:
    """The share (0-1) of true ``hits``: the union of its batch-means interval and Wilson's interval for
    independent trials (never narrower than either), clipped to [0, 1]."""
    hits = np.asarray(hits, float)
    if not hits.size:
        return NONE
    iv = mean_interval(hits, blocks, k)
    low, high = wilson(iv.estimate, int(hits.size))
    if not math.isnan(iv.low):
        low, high = min(low, iv.low), max(high, iv.high)
    return Interval(iv.estimate, max(low, 0.0), min(high, 1.0))


def block_rates(first: np.ndarray, last: np.ndarray, amounts: list[np.ndarray], lo: float, hi: float, k: int
                ) -> list[np.ndarray]:
    """Per block of [lo, hi) cut into ``k``: the rate (per second) of each of ``amounts`` (per request: 1 for
    requests, tokens for token rates; NaN counted as 0), each request counted by the share of its
    ``first``..``last`` span inside the block (a span of one instant: whole, in the block it falls in), as
    :func:`tokenswarm.report.levels.window_weights` counts it in the whole window. A block is at least a request
    lifetime long, so most requests touch one or two: the work is a pass per block a request spans."""
    first, last = np.asarray(first, float), np.asarray(last, float)
    width = (hi - lo) / k
    amounts = [np.nan_to_num(np.asarray(a, float)) for a in amounts]
    out = [np.zeros(k) for _ in amounts]
    ok = ~(np.isnan(first) | np.isnan(last))
    first, last, amounts = first[ok], last[ok], [a[ok] for a in amounts]
    span = last - first
    b_first = np.floor((first - lo) / width).astype(np.int64)
    b_last = np.floor((last - lo) / width).astype(np.int64)
    point = span <= 0
    if point.any():  # one instant: whole, in the block of its last token (when inside the window)
        b = b_last[point]
        inside = (b >= 0) & (b < k) & (last[point] < hi)
        for o, a in zip(out, amounts):
            o += np.bincount(b[inside], weights=a[point][inside], minlength=k)
    spread = ~point
    f, lt, sp, bf = first[spread], last[spread], span[spread], np.maximum(b_first[spread], 0)
    bl = np.minimum(b_last[spread], k - 1)
    amt = [a[spread] for a in amounts]
    steps = int((bl - bf).max()) + 1 if bl.size else 0
    for j in range(max(steps, 0)):
        b = bf + j
        mine = b <= bl
        if not mine.any():
            break
        bm = b[mine]
        seg_lo = lo + bm * width
        share = np.clip(np.minimum(lt[mine], seg_lo + width) - np.maximum(f[mine], seg_lo), 0.0, None) / sp[mine]
        for o, a in zip(out, amt):
            o += np.bincount(bm, weights=share * a[mine], minlength=k)
    return [o / width for o in out]


def rate_interval(rates: np.ndarray, estimate: float) -> Interval:
    """A window's rate ``estimate`` with the batch-means interval of its blocks' ``rates``."""
    se = _spread_se(np.asarray(rates, float))
    if not math.isfinite(se) or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan)
    t = t975(len(rates) - 1)
    return Interval(estimate, max(estimate - t * se, 0.0), estimate + t * se)


def ci_columns(name: str) -> tuple[str, str]:
    """levels.csv's interval columns of a figure column, the unit suffix kept last:
    ``ttft_p99_ms`` -> (``ttft_p99_ci_low_ms``, ``ttft_p99_ci_high_ms``)."""
    for unit in ("_tok_s", "_req_s", "_ms", "_pct", "_s"):
        if name.endswith(unit):
            base = name[: -len(unit)]
            return f"{base}_ci_low{unit}", f"{base}_ci_high{unit}"
    return f"{name}_ci_low", f"{name}_ci_high"
