"""The web UI as a person uses it, in headless Chromium (tests/headless.py): a start that fails says why in the
start form, the form asks for tokenswarm's options, the tokenswarm tab draws charts over time, and Locust's
headline figures count each request once. Screenshots go into each test's own folder."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import wait_http

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def web_ui(*args, env=None):
    """``tokenswarm ui ARGS`` on a free port: yields its base URL and a list that holds its output once it
    has stopped."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "tokenswarm", "ui", "--web-port", str(port), *args],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        wait_http(base + "/")
        yield base, output
    finally:
        proc.terminate()
        output.append(proc.communicate(timeout=60)[0])


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post(url, data):
    with urllib.request.urlopen(urllib.request.Request(url, data=data.encode()), timeout=60) as r:
        return json.loads(r.read())


FORM_FIELDS = "Array.from(document.querySelectorAll('form input[name], form select[name]')).map(e => e.name)"


@needs_chromium
def test_a_failed_start_shows_the_preflights_message_in_the_start_form(tmp_path):
    from headless import Browser

    closed = free_port()
    out = tmp_path / "ui"
    with web_ui("--engine", "vllm", "--host", f"http://127.0.0.1:{closed}", "--out", str(out)) as (base, output):
        with Browser() as b:
            b.open(base + "/")
            # tokenswarm's few options, in order, in the open "Custom parameters"; none of the other ~40
            b.wait_for("Array.from(document.querySelectorAll('form [aria-expanded=true]'))"
                       ".some(x => x.textContent.trim() === 'Custom parameters')")
            b.wait_for("document.querySelector('form input[name=maxTokens]').getBoundingClientRect().height > 0")
            time.sleep(0.5)  # the accordion's opening animation
            names = b.eval(FORM_FIELDS)
            ours = names[names.index("engine"):]
            assert ours == ["engine", "model", "maxTokens", "dataset", "datasetPath", "inputLen", "duration",
                            "requests", "slo"], names
            labels = b.eval("Array.from(document.querySelectorAll('form label')).map(l => l.textContent)")
            assert any(label.startswith("Max Tokens (") and "in tokens" in label for label in labels), labels
            assert b.eval("Array.from(document.querySelector('select[name=engine]').options).map(o => o.value)"
                          ).count("vllm") == 1
            b.screenshot(tmp_path / "start-form.png")
            b.eval("Array.from(document.querySelectorAll('form button')).find(x => x.textContent.trim() === 'Start')"
                   ".click()")
            alert = b.wait_for("Array.from(document.querySelectorAll('form [role=alert]'))"
                               ".map(x => x.textContent).join(' | ')")
            shot = tmp_path / "start-failed.png"
            assert b.screenshot(shot) > 10000
        assert alert == f"cannot reach http://127.0.0.1:{closed}: Connection refused"
        # nothing started: no test, no run folder; the tokenswarm tab has the same line
        assert get_json(base + "/stats/requests")["state"] == "ready"
        assert get_json(base + "/tokenswarm/series")["error"] == alert
        # the /swarm answer itself, for scripts: a form value of the wrong type is one line too
        bad = post(base + "/swarm", "user_count=2&spawn_rate=2&max_tokens=lots")
        assert bad == {"success": False, "message": "bad --max-tokens 'lots': must be a whole number",
                       "host": f"http://127.0.0.1:{closed}"}
    assert not out.exists()
    assert output[0].count(f"tokenswarm: error: {alert}") == 1  # on the terminal too, once


def test_a_failure_at_the_test_start_reaches_the_exceptions_tab_and_the_tokenswarm_tab(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with web_ui("--sim-args", "--ttft-ms 5 --tpot-ms 1", "--out", str(blocker / "run")) as (base, _):
        assert post(base + "/swarm", "user_count=2&spawn_rate=2")["success"] is True  # the target is fine
        deadline = time.time() + 30
        while not get_json(base + "/exceptions")["exceptions"]:
            assert time.time() < deadline
            time.sleep(0.3)
        row = get_json(base + "/exceptions")["exceptions"][0]
        assert row["msg"].startswith("cannot create the run folder") and row["nodes"] == "local"
        assert get_json(base + "/tokenswarm/series")["error"] == row["msg"]
        deadline = time.time() + 30
        while get_json(base + "/stats/requests")["state"] != "stopped":
            assert time.time() < deadline
            time.sleep(0.3)


@needs_chromium
def test_the_tokenswarm_tab_draws_charts_over_time(tmp_path):
    from headless import Browser

    out = tmp_path / "ui"
    with web_ui("--users", "4", "--sim-args", "--ttft-ms 50 --tpot-ms 10", "--out", str(out)) as (base, _):
        assert post(base + "/swarm", "user_count=4&spawn_rate=4")["success"] is True
        deadline = time.time() + 60
        while True:
            samples = get_json(base + "/tokenswarm/series")["samples"]
            if sum(s["output_tok_s"] is not None for s in samples) >= 3:
                break
            assert time.time() < deadline, samples
            time.sleep(0.5)
        with Browser() as b:
            b.open(base + "/?tab=tokenswarm")
            charts = b.wait_for("(() => { const c = document.querySelectorAll('svg.tokenswarm-chart');"
                                " return c.length === 5 && Array.from(c).map(s => [s.dataset.chart,"
                                " +s.dataset.points, s.querySelectorAll('polyline').length]); })()")
            shot = out / "webui-tokenswarm-tab.png"
            assert b.screenshot(shot) > 20000
            html = b.html()
            legend = b.eval("document.querySelector('svg[data-chart=ttft] .tokenswarm-legend').textContent")
            console = b.console
        got = {name: (points, lines) for name, points, lines in charts}
        assert set(got) == {"output_tok_s", "ttft", "tpot", "users", "failures"}
        assert got["output_tok_s"][0] >= 3 and got["output_tok_s"][1] >= 1  # a line through measured points
        assert got["ttft"][1] == 2 and got["tpot"][1] == 2  # p50 and p99
        assert got["users"][0] >= 3
        # the per-level table stays below the charts; the legend reads the engine's 50 ms TTFT
        assert html.index("tokenswarm-charts") < html.index("TTFT p50 (ms)")
        p50 = float(re.search(r"p50 ([\d.]+)", legend).group(1))
        assert 45 <= p50 <= 80, legend
        assert not console, console
        # Locust's headline figures count each request once: the tokenswarm tab's table agrees
        stats = get_json(base + "/stats/requests")
        rows = {s["name"]: s for s in stats["stats"]}
        assert rows["Aggregated"]["num_requests"] == rows["E2E"]["num_requests"]
        assert rows["TTFT"]["num_requests"] >= rows["E2E"]["num_requests"] - 4
        assert rows["E2E"]["avg_content_length"] > 20 * 128  # bytes of an event stream of 128 tokens
    assert os.path.getsize(shot) > 20000  # kept in the test's run folder


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_a_test_stopped_in_the_web_ui_with_workers_counts_every_request_in_locusts_files(tmp_path):
    import pandas as pd

    out = tmp_path / "ui"
    # --stop-timeout 1: after a stop a Locust worker waits that long before it is ready again (and can quit)
    with web_ui("--workers", "2", "--stop-timeout", "1", "--sim-args", "--ttft-ms 20 --tpot-ms 5", "--out",
                str(out)) as (base, _):
        deadline = time.time() + 60
        while get_json(base + "/stats/requests").get("worker_count", 0) < 2:
            assert time.time() < deadline
            time.sleep(0.3)
        assert post(base + "/swarm", "user_count=6&spawn_rate=6&max_tokens=16")["success"] is True
        time.sleep(4)
        post(base + "/stop", "")
        deadline = time.time() + 60
        while not (out / "run.json").exists() or json.loads((out / "run.json").read_text())["ended"] is None:
            assert time.time() < deadline
            time.sleep(0.3)
    rows = len(pd.read_csv(out / "requests.csv"))
    stats = pd.read_csv(out / "locust_stats.csv").set_index("Name")
    # the workers' last seconds of Locust statistics are in too (a stop, unlike a quit, sends none by itself)
    assert rows > 20 and stats.loc["Aggregated", "Request Count"] == rows == stats.loc["E2E", "Request Count"]


SHOTS = os.environ.get("TOKENSWARM_SHOTS", "")  # a folder to copy the screenshots into, to look at them


def keep_shot(path):
    if SHOTS:
        import shutil

        os.makedirs(SHOTS, exist_ok=True)
        shutil.copy(path, os.path.join(SHOTS, os.path.basename(path)))


@needs_chromium
def test_a_sweep_started_from_the_form_keeps_its_run_folder_report_and_marks_in_the_tab(tmp_path):
    from headless import Browser

    out = tmp_path / "ui"
    # short levels: fewer than 10 requests in a window, so the report marks them not steady (*)
    with web_ui("--levels", "1,2", "--level-duration", "2s", "--max-tokens", "32", "--sim-args",
                "--ttft-ms 50 --tpot-ms 10", "--out", str(out)) as (base, output):
        with Browser() as b:
            b.open(base + "/")
            b.wait_for("document.querySelector('form input[name=userCount]') !== null")
            # the levels set the users: the form's user fields are disabled, not required
            fields = b.eval("['userCount', 'spawnRate'].map(n => { const e = document.querySelector("
                            "'form input[name=' + n + ']'); return [e.disabled, e.required && !e.disabled]; })")
            assert fields == [[True, False], [True, False]], fields
            b.screenshot(tmp_path / "webui-sweep-form.png")
            keep_shot(tmp_path / "webui-sweep-form.png")
            b.eval("Array.from(document.querySelectorAll('form button')).find(x => x.textContent.trim() === 'Start')"
                   ".click()")
            deadline = time.time() + 90
            while get_json(base + "/tokenswarm/series")["report"] is None:
                assert time.time() < deadline, output
                time.sleep(0.5)
            b.open(base + "/?tab=tokenswarm")
            href = b.wait_for("(() => { const a = document.querySelector('a.tokenswarm-report');"
                              " return a && a.href; })()", timeout=30)
            run_line = b.eval("document.querySelector('.tokenswarm-run').textContent")
            b.wait_for("document.querySelectorAll('td').length > 0")
            cells = b.eval("Array.from(document.querySelectorAll('tr')).map(r => r.cells[0] &&"
                           " r.cells[0].textContent).filter(Boolean)")
            marks = b.eval("document.querySelector('.tokenswarm-marks').textContent")
            caption = b.eval("document.querySelector('.tokenswarm-caption').textContent")
            shot = tmp_path / "webui-run-kept.png"
            assert b.screenshot(shot) > 20000
            keep_shot(shot)
        # the run folder, where the test wrote it, and its report served by the web UI
        assert run_line.startswith(f"Run folder: {out}"), run_line
        with urllib.request.urlopen(href, timeout=10) as r:
            page = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/html")
        assert page == (out / "report.html").read_text()
        # nothing but the run's report files is served
        for wrong in (href.replace("report.html", "requests.csv"), href.replace("/report/", "/report/x")):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(wrong, timeout=10)
            assert e.value.code == 404
    # the level table keeps the report's marks, and says what they mean (a busy machine may add others: "2*!")
    marked = {m.group(1): m.group(2) for m in (re.fullmatch(r"(\d+)(\D*)", c) for c in cells) if m}
    assert "*" in marked.get("1", "") and "*" in marked.get("2", ""), cells
    assert marks.startswith("Marks in the table below: * not steady"), marks
    # Locust's header RPS is another figure than the table's Req/s: the tab says how
    assert "Locust's RPS in the header is its own rolling figure" in caption
