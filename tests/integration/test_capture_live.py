"""`tokenswarm run --timing capture` end to end: a real packet capture on lo against the simulated engine, whose
truth log says when it wrote each request's first token; and its bad input."""

import os
import socket

import pandas as pd
import pytest


def _can_capture() -> str:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
    except (AttributeError, OSError) as e:
        return f"no packet capture here (needs Linux and root or CAP_NET_RAW): {e}"
    return ""


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
@pytest.mark.skipif(bool(_can_capture()), reason=_can_capture() or "-")
def test_capture_times_every_request_from_the_kernels_segment_stamps(cli, sim_factory, tmp_path):
    truth = str(tmp_path / "truth.csv")
    sim = sim_factory("--ttft-ms", "200", "--tpot-ms", "20", "--truth-log", truth)
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim.url, "--users", "32", "--duration", "8s", "--max-tokens", "32",
            "--input-len", "32", "--out", out, "--timing", "capture")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "packet capture:" in p.stdout and " 0 dropped by the kernel" in p.stdout
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    ok = df[df.status == "ok"]
    assert len(ok) == len(df) > 50
    captured = ok[ok.timing_source == "capture"]
    assert len(captured) >= 0.95 * len(ok)  # a request the capture missed says so, and keeps its read bounds
    assert (captured.ttft_error_bound_ms == 0).all() and (captured.e2e_error_bound_ms == 0).all()
    sim.stop()  # its truth log is complete once it stopped
    j = captured.merge(pd.read_csv(truth), on="request_id")
    assert len(j) == len(captured)
    # the first token's segment is stamped as it arrives, after the engine noted its write: never before it,
    # and soon after (the write itself; the engine notes the time just before). A segment matched to the wrong
    # event would be off by the 20 ms between tokens
    read_side_ms = (j.start_time + j.ttft_ms / 1000.0 - j.first_write) * 1000.0
    assert read_side_ms.min() > -0.5
    assert (read_side_ms < 2.0).mean() >= 0.95 and read_side_ms.median() < 0.5
    # the send is the request's segment as it left: the engine reads it after that
    send_side_ms = (j.arrival - j.start_time) * 1000.0
    assert send_side_ms.min() > -0.5


@pytest.mark.parametrize("args, msg", [  # (the table in docs/commands.md has the other two)
    (["--timing", "capture", "--host", "https://127.0.0.1:8443"], "--timing capture reads plain HTTP"),
    (["--timing", "capture", "--host", "http://192.0.2.1:8000"], "--timing capture times IPv4 loopback targets only"),
])
def test_bad_timing_exits_2_with_one_line_and_no_run_folder(cli, args, msg, tmp_path):
    out = tmp_path / "run"
    p = cli("run", "--users", "1", "--requests", "1", "--out", str(out), *args)
    assert p.returncode == 2, p.stderr[-2000:]
    assert msg in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()
