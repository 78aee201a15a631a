"""Why a run exits with code 1: the failed share, the levels that failed and their failure kinds."""

import pytest

from tokenswarm.exitstatus import failure_ratio, failures_message


def test_the_message_names_each_failing_level_worst_first_with_its_share_and_kinds():
    by_level = {
        "4": {"ok": 100},
        "8": {"ok": 81, "http_error": 15, "timeout": 4, "cancelled": 7},  # 19 % of 100 finished
        "16": {"ok": 95, "disconnect": 5},
    }
    ratio = failure_ratio(by_level)
    assert ratio == pytest.approx(24 / 300)
    msg = failures_message(by_level, 0.05)
    assert msg == ("exit code 1: 8.0% of finished requests failed, above --max-fail-ratio 0.05: "
                   "level 8: 19.0% failed (http_error 15, timeout 4); level 16: 5.0% failed (disconnect 5)")
    assert failures_message(by_level, 0.08) == ""  # within the limit: nothing to explain
    lost = failures_message({"2": {"ok": 10}}, 0.0, lost_in_flight=2, level_word="rate")
    assert lost.startswith("exit code 1: 16.7% of finished") and "2 requests lost in flight" in lost
    assert failure_ratio({}) == 0.0
