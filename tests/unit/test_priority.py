"""--priority: what is asked, what the kernel grants, and the fall back with its reason."""

import os

import pytest

from tokenswarm import priority


def test_an_unknown_priority_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="normal, high, realtime"):
        priority.apply("urgent")


def test_normal_leaves_the_process_alone():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    assert priority.apply("normal") == {"asked": "normal", "got": "normal", "why": ""}
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def _in_child(fn):
    """Run ``fn`` in a forked child (a raised priority must not leak into the test process); its result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = repr(fn())
        except BaseException as e:  # noqa: BLE001  (reported to the parent)
            out = repr(("error", str(e)))
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    import ast

    return ast.literal_eval(data)


def test_realtime_is_got_where_permitted_and_falls_back_with_the_reason_where_not():
    got = _in_child(lambda: (priority.apply("realtime"), priority.current()))
    result, now = got
    assert result["asked"] == "realtime"
    if result["got"].startswith("realtime"):
        assert now == result["got"] and result["why"] == ""
    else:  # refused: the next one down, and why
        assert "SCHED_RR" in result["why"] and now.split(" (")[0] == result["got"].split(" (")[0]


def test_a_refused_real_time_class_falls_back_to_nice(monkeypatch):
    def refuse(*_a):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    got = _in_child(lambda: priority.apply("realtime"))
    assert got["why"] == "SCHED_RR: Operation not permitted; SCHED_FIFO: Operation not permitted"
    assert got["got"] in ("high (nice -10)", "normal")  # nice -10 where permitted
    if got["got"] == "normal":
        assert "nice -10" in got["why"]
