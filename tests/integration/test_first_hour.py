"""What a newcomer meets on the command line: one line per mistake, hints that point the right way, no
secrets echoed, no tracebacks, no empty run folders, and tokenswarm's table rather than Locust's."""

import csv
import io
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from procs import Proc


def one_error_line(p):
    assert p.returncode == 2, p.stdout[-1000:] + p.stderr[-1000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr  # no usage dump, no traceback
    return lines[0]


def test_a_misspelt_option_gets_a_did_you_mean(cli):
    line = one_error_line(cli("sweep", "--levelz", "1,2"))
    assert "unrecognized arguments: --levelz" in line and "did you mean --levels" in line


def test_an_ambiguous_option_is_one_line(cli):
    line = one_error_line(cli("run", "--max", "5"))
    assert "ambiguous option: --max could match" in line and "--max-tokens" in line


def test_a_header_without_its_colon_never_echoes_the_value(cli):
    line = one_error_line(cli("run", "--header", "Authorization Bearer sk-secret-1234567"))
    assert "sk-secret" not in line and "Bearer" not in line
    assert "'Authorization'" in line and "Name: value" in line


def test_locust_tables_only_on_request(cli, sim_fixed, tmp_path):
    p = cli("run", "--host", sim_fixed.url, "--requests", "4", "--users", "2", "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Response time percentiles" not in p.stdout + p.stderr
    assert "Concurrency" in p.stdout and p.stdout.strip().splitlines()[-1] == str(tmp_path / "a")
    p = cli("run", "--host", sim_fixed.url, "--requests", "4", "--users", "2", "--out", str(tmp_path / "b"),
            "--locust-tables")
    assert "Response time percentiles" in p.stdout + p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_master_stopped_while_waiting_for_workers_exits_cleanly_with_no_folder(sim_fixed, tmp_path, sig):
    port = 5600 + os.getpid() % 300 + (sig == signal.SIGTERM)
    p = Proc([sys.executable, "-m", "tokenswarm", "run", "--master", "--expect-workers", "2",
              "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--host", sim_fixed.url,
              "--users", "2", "--duration", "5s"], cwd=str(tmp_path))
    # said once Ctrl-C and SIGTERM are handled (a fixed sleep here once stood for it)
    p.wait_for(r"tokenswarm: master waiting for 2 worker\(s\) on port", timeout=60)
    p.p.send_signal(sig)
    assert p.finish(timeout=60) == 130, p.tail()
    assert "Traceback" not in p.text and "KeyboardInterrupt" not in p.text, p.tail()
    assert "no test ran" in p.text
    assert not os.path.exists(tmp_path / "reports") or os.listdir(tmp_path / "reports") == []


def test_a_sweep_above_100_users_prints_no_spawn_rate_warning(cli, sim_fixed, tmp_path):
    # each level's users start within a second on purpose: Locust's warning about it said nothing useful
    p = cli("sweep", "--host", sim_fixed.url, "--levels", "2,150", "--level-requests", "150", "--max-tokens", "4",
            "--out", str(tmp_path / "r"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "150" in p.stdout  # the level ran
    assert "spawn rate is very high" not in p.stdout + p.stderr


def test_a_sweep_cut_by_ctrl_c_says_so_on_the_console_as_report_md_does(sim_fixed, tmp_path):
    out = tmp_path / "r"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    p = subprocess.Popen([sys.executable, "-m", "tokenswarm", "sweep", "--host", sim_fixed.url, "--levels",
                          "1,2,4,8,16", "--level-duration", "3s", "--max-tokens", "8", "--out", str(out)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # level 2 has begun (requests.csv is flushed every second)
        text = (out / "requests.csv").read_text() if (out / "requests.csv").exists() else ""
        if any(row.get("level") == "2" for row in csv.DictReader(io.StringIO(text))):
            break
        time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stdout[-2000:] + stderr[-2000:]
    line = next(ln for ln in stdout.splitlines() if ln.startswith("Saturation:"))
    assert "beyond this sweep" not in stdout and "not reached before the sweep stopped" in line, line
    assert "planned but not run: 4, 8, 16" in line or "planned but not run: 8, 16" in line, line
    reason = line.split("(", 1)[1].rsplit(")", 1)[0]
    report = (out / "report.md").read_text()
    assert reason in report and "did not complete" in report
    assert f"`tokenswarm sweep --resume {out}` runs the rest" in stderr


def _descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (Linux's /proc/PID/task/TID/children), at any depth."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    kids = [int(x) for x in fh.read().split()]
            except OSError:
                continue
            out.update(kids)
            todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_client_killed_outright_leaves_no_load_running(tmp_path):
    # SIGKILL gives tokenswarm no chance to stop its children: the Locust process used to send the rest of the
    # plan with no client in sight, and the embedded engine lived on under init. Each child now ends with it
    out = tmp_path / "r"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    p = subprocess.Popen([sys.executable, "-m", "tokenswarm", "sweep", "--levels", "1,2,4", "--level-duration",
                          "20s", "--max-tokens", "16", "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    kids: set[int] = set()
    while time.monotonic() < deadline:  # requests are being sent (requests.csv is flushed every second)
        kids |= _descendants(p.pid)
        if (out / "requests.csv").exists() and (out / "requests.csv").stat().st_size > 500:
            break
        time.sleep(0.3)
    kids |= _descendants(p.pid)
    assert len(kids) >= 2, kids  # the Locust process and the simulated engine
    p.kill()
    p.wait(timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.3)
    left = [k for k in kids if _alive(k)]
    assert not left, [pathlib.Path(f"/proc/{k}/cmdline").read_bytes() for k in left]
