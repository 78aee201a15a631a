"""``tokenswarm runs ROOT``: one index page of every run under a folder, each row linked to its report."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from urllib.parse import unquote

import pytest

from tokenswarm.report import build_report
from tokenswarm.report.errors import ReportError
from tokenswarm.report.runs import INDEX_HTML, find_runs, write_index
from tokenswarm.report.synthetic import write_run


def _prov(date: str, engine_version: str, command: str) -> dict:
    return {"date": date, "tokenswarm": "0.7.2", "command": command,
            "client": {"host": "lg-1", "cpus": 16, "os": "Linux", "python": "3.12.3"},
            "engine": {"version": engine_version, "version_source": "GET /version", "owned_by": "vllm"}}


def _add(run: str, **extra) -> None:
    path = os.path.join(run, "run.json")
    with open(path, encoding="utf-8") as fh:
        meta = json.load(fh)
    meta.update(extra)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh)


@pytest.fixture
def root(tmp_path):
    """Four runs: two built (vllm and sglang), one of a --repeat not built yet, and a broken run.json."""
    r = tmp_path / "reports"
    a, b = str(r / "20261205-vllm"), str(r / "20261206-sglang")
    write_run(a, levels=(1, 2, 4, 8, 16), capacity=8, seed=1, settings={"engine": "vllm", "model": "llama-8b"})
    _add(a, provenance=_prov("2026-12-05T09:00:00Z", "0.8.5", "tokenswarm sweep --levels 1,2,4,8,16 "
                                                             "--api-key '<redacted>' & <b>"))
    build_report(a)
    write_run(b, levels=(1, 2, 4), capacity=2, seed=2, settings={"engine": "sglang", "model": "llama-8b"})
    _add(b, provenance=_prov("2026-12-06T09:00:00Z", "0.4.6", "tokenswarm sweep --engine sglang"))
    build_report(b)
    c = str(r / "repeats" / "repeat-1")
    write_run(c, levels=(4,), seed=3, settings={"engine": "vllm"})
    bad = r / "broken"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    return str(r)


def test_every_run_is_found_including_repeats(root):
    assert [os.path.relpath(f, root) for f in find_runs(root)] == [
        "20261205-vllm", "20261206-sglang", "broken", os.path.join("repeats", "repeat-1")]


def test_the_index_lists_each_run_newest_first_and_links_its_report(root):
    index = write_index(root)
    assert index.path == os.path.join(root, INDEX_HTML)
    rows = {os.path.basename(r.folder): r for r in index.rows}
    assert [os.path.basename(r.folder) for r in index.rows][:2] == ["20261206-sglang", "20261205-vllm"]
    v = rows["20261205-vllm"]
    assert (v.date, v.engine, v.model, v.version) == ("2026-12-05 09:00:00", "vllm 0.8.5", "llama-8b", "0.7.2")
    with open(os.path.join(root, "20261205-vllm", "summary.json"), encoding="utf-8") as fh:
        summary = json.load(fh)
    assert v.saturation == f"{summary['saturation_level']:g}"
    assert v.peak == f"{summary['peak_output_throughput']['output_throughput_tok_s']:,.1f} at " \
                     f"{summary['peak_output_throughput']['level']:g}"
    assert rows["repeat-1"].saturation == "not built" and rows["repeat-1"].report is None
    assert rows["broken"].problem.startswith("run.json cannot be read")
    assert index.problems == [f"{os.path.join(root, 'broken')}: {rows['broken'].problem}"]
    with open(index.path, encoding="utf-8") as fh:
        page = fh.read()
    hrefs = [unquote(unescape(h)) for h in re.findall(r'href="([^"]+)"', page)]
    assert sorted(hrefs) == ["20261205-vllm/report.html", "20261206-sglang/report.html"]
    for h in hrefs:  # each link opens the run's report
        assert os.path.exists(os.path.join(root, h))
    assert "&amp; &lt;b&gt;" in page and "<b>" not in page  # the command is text, escaped
    assert "<script" not in page.lower() and "http" not in page.replace("http-equiv", "")


def test_an_index_written_elsewhere_links_back(root, tmp_path):
    out = tmp_path / "site" / "all.html"
    out.parent.mkdir()
    index = write_index(root, str(out))
    page = out.read_text(encoding="utf-8")
    for h in re.findall(r'href="([^"]+)"', page):
        assert os.path.exists(os.path.join(out.parent, unquote(unescape(h))))
    assert index.path == str(out)


@pytest.mark.parametrize("make, needle", [
    (lambda p: str(p / "missing"), "is not a folder"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "no run folder"),
])
def test_bad_roots_are_one_line(tmp_path, make, needle):
    with pytest.raises(ReportError, match=needle):
        write_index(make(tmp_path))


def test_cli_runs_prints_the_count_and_the_page_last(root, cli):
    p = cli("runs", root, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines == ["tokenswarm: 4 runs indexed", os.path.join(root, INDEX_HTML)]
    assert p.stderr.count("\n") == 1 and "broken: run.json cannot be read" in p.stderr  # a warning, not fatal


@pytest.mark.parametrize("args, needle", [
    (["/nonexistent/reports"], "'/nonexistent/reports' is not a folder"),
    (["{tmp}"], "no run folder"),
    (["{root}", "--out", "/nonexistent/dir/index.html"], "cannot write '/nonexistent/dir/index.html'"),
])
def test_cli_runs_bad_input_is_one_line_and_exit_2(root, tmp_path, cli, args, needle):
    empty = tmp_path / "nothing"
    empty.mkdir()
    p = cli("runs", *(a.format(tmp=empty, root=root) for a in args), timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and needle in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""
