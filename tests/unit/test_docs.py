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
