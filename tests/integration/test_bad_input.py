"""Every row of the bad-input table (docs/commands.md): exit code 2, one line naming the problem, no traceback."""

import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def table_rows():
    with open(os.path.join(ROOT, "docs", "commands.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index("Bad input is one line"):]
    section = section[:section.index("\n## ")]
    rows = re.findall(r"^\| `tokenswarm ([^`]+)` \| `([^`]+)` \|$", section, re.M)
    assert len(rows) >= 12, rows
    return rows


@pytest.mark.parametrize("args,message", table_rows())
def test_bad_input_row(args, message, cli, tmp_path):
    argv = shlex.split(args)
    if argv[0] in ("run", "sweep") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    p = cli(*argv, timeout=120)
    assert p.returncode == 2, p.stdout[-1000:] + p.stderr[-1000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("tokenswarm: error:")]
    assert len(errors) == 1, p.stderr
    assert message in errors[0]
    assert "Traceback" not in p.stderr
