"""The run folder, reports/<run_id>/: names, run ids, and run.json.

run.json holds the settings (secrets redacted), versions, host, workers and
the level timeline; it is written at start (``"complete": false``) and again
at the end. Writes are atomic (temporary file, then rename), so a reader never
sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from typing import Any

RUN_JSON = "run.json"
REQUESTS_CSV = "requests.csv"
LOCUST_PREFIX = "locust"  # locust_stats.csv, locust_stats_history.csv, ...
LEVELS_CSV = "levels.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS = "plots"
DEFAULT_ROOT = "reports"


def new_run_id(engine: str, label: str = "", now: float | None = None) -> str:
    """``20261121-173000-sim`` (+ ``-label``): sortable, readable, safe in paths."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    parts = [stamp, engine] + ([label] if label else [])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts))


def make_run_dir(out: str, engine: str, label: str = "", root: str = DEFAULT_ROOT) -> str:
    """Create the run folder (``out``, or a new one under ``root``) and return its path."""
    path = out or os.path.join(root, new_run_id(engine, label))
    if not out:
        base, n = path, 1
        while os.path.exists(path):
            n += 1
            path = f"{base}-{n}"
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"run folder {path} is not writable")
    return path


def remove_if_unused(run_dir: str) -> bool:
    """Remove a run folder in which no test started (no run.json): the logs tokenswarm put there, then the folder
    if that left it empty. Anything else in it stays. True when the folder is gone."""
    if os.path.exists(os.path.join(run_dir, RUN_JSON)):
        return False
    try:
        for name in os.listdir(run_dir):
            if name in ("simengine.log", "resume.json") or re.fullmatch(r"worker-\d+\.log", name):
                os.unlink(os.path.join(run_dir, name))
        os.rmdir(run_dir)
    except OSError:
        return False
    return True


def strict_json(data: Any) -> Any:
    """``data`` with every float that JSON (RFC 8259) cannot hold, NaN and the infinities, as None (null), in
    dicts, lists and tuples at any depth; numpy floats included. Python's json writes them as bare NaN and
    Infinity, which strict parsers (JavaScript's JSON.parse, jq) refuse."""
    if isinstance(data, float):  # numpy.float64 is a float too
        return float(data) if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v) for v in data]
    if type(data).__module__ == "numpy" and hasattr(data, "item"):  # numpy scalars other than float64
        return strict_json(data.item())
    return data


def write_json(path: str, data: Any) -> None:
    """Write JSON atomically, strict: NaN and the infinities as null (:func:`strict_json`)."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(strict_json(data), fh, indent=2, default=str, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_run_json(run_dir: str) -> dict[str, Any]:
    path = os.path.join(run_dir, RUN_JSON)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
