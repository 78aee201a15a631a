"""runfolder.write_json: the run's JSON files (run.json, summary.json, capacity.json, compare.json) are strict
JSON, which JavaScript's JSON.parse and jq read: NaN and the infinities are written as null."""

import json
import math

import numpy as np
import pytest

from tokenswarm.runfolder import strict_json, write_json


def _refuse(name):
    raise ValueError(f"not JSON: {name}")


def test_nan_and_infinities_are_written_as_null_at_any_depth(tmp_path):
    path = str(tmp_path / "capacity.json")
    data = {"estimate": 25.0, "ci_low": float("nan"), "levels": [{"ttft_p99_ms": np.float64("nan")},
            {"ttft_p99_ms": np.float32(12.5), "n": np.int64(3)}], "span": (float("inf"), -math.inf), "ok": True}
    write_json(path, data)
    with open(path, encoding="utf-8") as fh:
        back = json.load(fh, parse_constant=_refuse)  # the strict reading: bare NaN/Infinity raise
    assert back == {"estimate": 25.0, "ci_low": None, "levels": [{"ttft_p99_ms": None},
                    {"ttft_p99_ms": 12.5, "n": 3}], "span": [None, None], "ok": True}


def test_the_strict_reading_refuses_what_python_writes_by_default():
    # the check above can fail: Python's own json writes NaN bare, and the strict reading refuses it
    with pytest.raises(ValueError, match="not JSON: NaN"):
        json.loads(json.dumps({"x": float("nan")}), parse_constant=_refuse)
    assert strict_json({"x": [1, "a", None]}) == {"x": [1, "a", None]}
