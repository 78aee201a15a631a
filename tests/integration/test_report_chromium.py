"""report.html and compare.html load in a real browser: headless Chromium dumps the DOM and takes a screenshot.

Needs Debian's ``chromium`` package (``/usr/bin/chromium``); skipped without it.
Console messages are read from Chromium's log (``--enable-logging=stderr``);
a deliberately broken page checks that they would be seen.
"""

import os
import subprocess

import numpy as np
import pytest

from tokenswarm.report import build_report, compare
from tokenswarm.report.synthetic import write_run

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs /usr/bin/chromium (apt-get install chromium) to load the HTML reports")


def chromium(page: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(os.listdir(tmp_path))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
           "file://" + os.path.abspath(page)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def console(stderr: str) -> list[str]:
    """The page's console messages (errors included) as Chromium logs them."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def check_loads(page: str, tmp_path, heading: str, images: int) -> None:
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"<th>{heading}</th>" in dom.stdout and dom.stdout.count('src="data:image/png;base64,') == images
    assert console(dom.stderr) == []
    shot = str(tmp_path / "shot.png")
    res = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert res.returncode == 0, res.stderr[-2000:]
    assert console(res.stderr) == []
    assert os.path.getsize(shot) > 50_000
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    ink = (pixels < 0.8).any(axis=2)  # text, table rules, plot lines
    assert 0.01 < ink.mean() < 0.6
    assert ink[1400:].mean() > 0.005  # the plots below the tables rendered too
    rgb = (pixels * 255).astype(np.int64)
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert colours.size > 50  # the plots' lines, markers and antialiasing


def test_a_broken_page_is_noticed(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><table><tr><th>x</th></tr></table>"
                   "<script>console.error('boom'); missingFunction();</script></body></html>")
    res = chromium(str(bad), tmp_path, "--dump-dom")
    assert res.returncode == 0 and "<th>x</th>" in res.stdout
    messages = console(res.stderr)
    assert any("boom" in m for m in messages) and any("missingFunction" in m for m in messages)


def test_report_html_renders_in_chromium(tmp_path):
    run = str(tmp_path / "run")
    write_run(run, levels=(1, 2, 4, 8, 16), capacity=8, slo={"ttft": 500}, seed=3)
    build_report(run)
    check_loads(os.path.join(run, "report.html"), tmp_path, "Output Throughput (tok/s)", images=5)


def test_compare_html_renders_in_chromium(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    write_run(a, levels=(1, 2, 4, 8), capacity=4, seed=1, settings={"engine": "vllm"})
    write_run(b, levels=(2, 4, 8, 16), capacity=8, seed=2, settings={"engine": "sglang"})
    res = compare([a, b], None, str(tmp_path / "cmp"))
    check_loads(os.path.join(res.out_dir, "compare.html"), tmp_path, "Output tok/s", images=5)
