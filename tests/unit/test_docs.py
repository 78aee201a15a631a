"""The README a newcomer reads: short, its first two commands `make loadtest` and `make test`, one way to type the
command, and every link in it and in docs/ leading somewhere."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
#: the pages a reader finds by name (the README links each)
PAGES = ("commands.md", "metrics.md", "reports.md", "engines-and-dialects.md", "workloads.md", "distributed.md",
         "web-ui.md", "faults-and-gateways.md", "architecture.md")
MAX_README_LINES = 130


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def markdown_files():
    return [README] + sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))


def test_the_readme_opens_with_make_loadtest_and_make_test():
    text = read(README)
    first_block = text.split("```", 2)[1]
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines()[1:] if ln.strip()]
    assert commands[:2] == ["make loadtest", "make test"], commands
    assert text.index("make loadtest") < text.index("## ")  # before anything else


def test_the_readme_is_short():
    n = len(read(README).splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move detail into docs/"


def test_the_readme_links_every_docs_page():
    text = read(README)
    for name in PAGES:
        assert os.path.exists(os.path.join(DOCS, name)), name
        assert f"(docs/{name})" in text, name


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(path):
    text = re.sub(r"```.*?```", "", read(path), flags=re.S)  # code blocks hold no links
    links = re.findall(r"\[[^\]]+\]\(([^)\s]+)\)", text)
    missing = []
    for link in links:
        if re.match(r"(https?:|mailto:|#)", link):
            continue
        target = os.path.normpath(os.path.join(os.path.dirname(path), link.split("#")[0]))
        if not os.path.exists(target):
            missing.append(link)
    assert not missing, f"{os.path.relpath(path, ROOT)}: {missing}"


def test_one_way_to_type_the_command():
    # `tokenswarm` in every command shown, with the README saying how it gets on PATH; `.venv/bin/tokenswarm` only
    # in the paragraphs that say so (what to type without `source .venv/bin/activate`)
    assert "source .venv/bin/activate" in read(README)
    for path in markdown_files():
        text = read(path)
        for block in re.findall(r"```.*?```", text, flags=re.S):
            assert ".venv/bin/tokenswarm" not in block, (path, block[:200])
        for para in re.sub(r"```.*?```", "", text, flags=re.S).split("\n\n"):
            if ".venv/bin/tokenswarm" in para:
                assert "source .venv/bin/activate" in para, (path, para[:200])


def test_reports_readme_names_every_column_a_run_writes():
    # the column contract other tools read: requests.csv's columns, and levels.csv's as the code writes them
    # (a synthetic level with an SLO) and as a GPU example's has them (engine and GPU columns); a latency's
    # statistics and the interval bounds are named by their patterns
    import numpy as np
    import pandas as pd

    from tokenswarm import requestscsv
    from tokenswarm.report.levels import LATENCIES, Window, level_stats

    with open(os.path.join(ROOT, "reports", "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    req = text.split("## requests.csv columns", 1)[1].split("## levels.csv columns", 1)[0]
    assert [c for c in requestscsv.COLUMNS if f"`{c}`" not in req] == []
    t0 = 1_790_000_000.0
    df = pd.DataFrame({"start_time": t0 + np.arange(20.0), "level": 2.0, "status": "ok", "ttft_ms": 300.0,
                       "tpot_ms": 20.0, "e2e_ms": 1500.0, "close_ms": 1510.0, "input_tokens": 18.0,
                       "output_tokens": 60.0, "output_events": 60.0, "itl_ms": "20.0 20.0"})
    written = list(level_stats(df, [Window(2.0, t0, t0 + 25, t0)], slo={"ttft": 500.0}).columns)
    example = os.path.join(ROOT, "reports", "examples", "gpu-sglang-h100", "levels.csv")
    written += list(pd.read_csv(example, nrows=1).columns)
    stats = {f"{m}_{s}" for m in LATENCIES for s in ("mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms",
                                                     "p95_ms", "p99_ms", "p999_ms")}
    lv = text.split("## levels.csv columns", 1)[1]
    missing = sorted({c for c in written if c not in stats and "_ci_" not in c and f"`{c}`" not in lv})
    assert missing == [], missing
