"""report.html read as a person reads it: headless Chromium at 1400 px, a screenshot kept under the test's
folder, and measures taken in the page (JavaScript) and on the screenshot's pixels.

The run folders are the examples shipped in reports/examples (a llama.cpp sweep with requests.csv, the
client's health and the engine's /metrics; a vLLM sweep on an H200 read from its levels.csv, with the engine's
opinions), copied, and a synthetic sweep whose TTFT spans decades.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from headless import CHROMIUM, Browser
from tokenswarm.report import build_report
from tokenswarm.report.synthetic import write_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "reports", "examples")
WIDTH = 1400
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")

MEASURE = """(() => {
  const boxes = sel => [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect());
  const scrolls = [...document.querySelectorAll('.scroll')];
  const facts = document.querySelector('table.facts');
  const firstH2 = document.querySelector('h2');
  return {
    docWidth: document.scrollingElement.scrollWidth, inner: innerWidth,
    scrolling: scrolls.filter(d => d.scrollWidth > d.clientWidth).map(d => d.previousElementSibling.textContent),
    tablesRight: Math.max(...boxes('table').map(b => b.right)),
    imagesRight: Math.max(...boxes('img').map(b => b.right)),
    imagesLoaded: [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 600),
    groups: [...document.querySelectorAll('h3')].map(h => h.textContent),
    h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
    facts: facts ? [...facts.querySelectorAll('th')].map(t => t.textContent) : [],
    factsAboveResults: facts && firstH2 ? facts.getBoundingClientRect().bottom < firstH2.getBoundingClientRect().top
                                        : false,
  };
})()"""


def _copy_example(name: str, tmp_path) -> str:
    run = str(tmp_path / name)
    shutil.copytree(os.path.join(EXAMPLES, name), run, ignore=shutil.ignore_patterns("report.*", "plots",
                                                                                    "summary.json"))
    return run


def _open(run: str, tmp_path, shot_name: str) -> tuple[dict, np.ndarray]:
    """The page's measures and its screenshot's pixels (RGB, 0-1), the PNG kept as ``shot_name``."""
    from matplotlib.image import imread

    shot = tmp_path / shot_name
    with Browser(width=WIDTH, height=900) as b:
        b.open("file://" + os.path.join(os.path.abspath(run), "report.html"))
        m = b.eval(MEASURE)
        b.screenshot(shot)
    return m, imread(str(shot))[..., :3]


def _check_fits(m: dict, pixels: np.ndarray) -> None:
    assert m["docWidth"] <= m["inner"] == WIDTH  # the page does not scroll sideways
    assert m["scrolling"] == []  # nor does any table inside it (the old per-level table did, at 1433 px)
    assert m["tablesRight"] <= WIDTH - 100 and m["imagesRight"] <= WIDTH - 100
    assert m["imagesLoaded"]
    assert pixels.shape[1] == WIDTH
    ink = (pixels < 0.85).any(axis=2)
    assert ink[:, : WIDTH // 2].mean() > 0.01  # the page drew
    assert ink[:, WIDTH - 90:].mean() == 0.0  # ... and nothing reaches into the right margin


@pytest.mark.parametrize("example", ["llamacpp-smollm2-cpu", "gpu-vllm-h200", "gpu-sglang-h100"])
def test_report_fits_1400_px_with_its_tables_in_groups(example, tmp_path):
    run = _copy_example(example, tmp_path)
    build_report(run)
    m, pixels = _open(run, tmp_path, f"report-{example}-1400.png")
    _check_fits(m, pixels)
    assert m["groups"][:2] == ["Latency: first token and whole request (ms)", "Latency: between tokens (ms)"]
    assert "Throughput and load" in m["groups"]
    assert m["facts"] == ["Date", "tokenswarm", "Command", "Client", "Engine", "Model"] and m["factsAboveResults"]
    if example == "llamacpp-smollm2-cpu":  # it has the engine's gauges, the client's health and cache hits
        assert {"Engine", "Client: evidence"} <= set(m["groups"]) and "Prefix cache" in m["h2"]


def test_a_run_without_cache_hits_has_no_prefix_cache_section(tmp_path):
    run = str(tmp_path / "run")
    write_run(run, levels=(1, 2, 4, 8, 16, 32, 64), capacity=16, cached_share=0.0, seed=5,
              settings={"engine": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct"})
    build_report(run)
    m, pixels = _open(run, tmp_path, "report-synthetic-1400.png")
    _check_fits(m, pixels)
    assert "Prefix cache" not in m["h2"] and "Results" in m["h2"]
    md = Path(run, "report.md").read_text(encoding="utf-8")
    assert "Prefix cache" not in md and "Prefix cache hit" not in md and "TTFT p50 hit" not in md


def test_a_run_with_cache_hits_keeps_its_prefix_cache_section(tmp_path):
    run = str(tmp_path / "run")
    write_run(run, levels=(1, 2, 4), capacity=8, cached_share=0.5, seed=5,
              settings={"workload": {"kind": "shared-prefix"}})
    build_report(run)
    md = Path(run, "report.md").read_text(encoding="utf-8")
    assert "## Prefix cache" in md and "50% of prompt tokens" in md and "| Prefix cache hit |" in md


def test_the_three_opinions_with_vllm_bench_beside_fit_too(tmp_path):
    run = str(tmp_path / "run")
    write_run(run, levels=(1, 2, 4, 8, 16), capacity=8, seed=3, settings={"engine": "vllm"})
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "vllm_bench"), os.path.join(run, "peers"))
    build_report(run)
    m, pixels = _open(run, tmp_path, "report-opinions-1400.png")
    assert "Three opinions per level" in m["h2"]  # 15 columns: ours, the engine's, vLLM bench's
    _check_fits(m, pixels)


def test_the_runs_index_fits_1400_px_and_its_links_open_the_reports(tmp_path):
    from tokenswarm.report.runs import write_index

    root = tmp_path / "reports"
    for example in ("llamacpp-smollm2-cpu", "gpu-vllm-h200"):
        build_report(_copy_example(example, root))
    index = write_index(str(root))
    shot = tmp_path / "runs-index-1400.png"
    with Browser(width=WIDTH, height=900) as b:
        b.open("file://" + os.path.abspath(index.path))
        m = b.eval("""(() => ({docWidth: document.scrollingElement.scrollWidth, inner: innerWidth,
          rows: document.querySelectorAll('table.runs tbody tr').length,
          heads: [...document.querySelectorAll('table.runs th')].map(t => t.textContent),
          links: [...document.querySelectorAll('a')].map(a => a.href),
          right: document.querySelector('table.runs').getBoundingClientRect().right}))()""")
        b.screenshot(shot)
        assert m["docWidth"] <= m["inner"] == WIDTH and m["right"] <= WIDTH - 100
        assert m["rows"] == len(index.rows) >= 2
        assert m["heads"] == ["Date (UTC)", "Run", "Engine", "Model", "tokenswarm", "Command", "Peak output tok/s",
                              "Saturation"]
        b.open(m["links"][0])  # a link opens a report
        assert b.eval("document.querySelector('h1').textContent").startswith("tokenswarm report")
