"""A report as a list of blocks, rendered once as Markdown and once as one self-contained HTML page.

Blocks are headings, paragraphs (with ``**bold**`` and ```code``` inline
markup), warnings, bullet lists, named facts (the header: date, version,
command, client, engine), tables (heads and formatted cells) and images (PNG
files). The HTML page carries its CSS inline and each image as
a base64 ``data:`` URI: no script, no external URL, so the one file can be
mailed, attached to a ticket or opened offline. report.md and compare.md
link the PNGs by relative path instead.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenswarm.report import tables

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:24px auto;
max-width:1200px;padding:0 16px;color:#1d2330;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #d8dde6}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d8dde6;padding:3px 7px}th{background:#eef1f6;text-align:center}
h3{font-size:1.02em;margin:1.1em 0 .2em}td.r{text-align:right}
td .ci{color:#6b7385;font-size:.9em;white-space:nowrap}td.l{text-align:left}tbody tr:nth-child(even){background:#f8f9fb}
code{background:#f1f3f7;padding:0 3px;border-radius:3px}
.warn{background:#fff4e0;border-left:4px solid #e8a33d;padding:6px 10px}
figure{display:inline-block;margin:8px 12px 8px 0}figure img{max-width:100%;border:1px solid #d8dde6}
figcaption{font-size:.85em;color:#555}
.scroll{overflow-x:auto}
table.facts{font-size:.9em;margin-top:0}table.facts th{text-align:left;background:none;white-space:nowrap}
table.facts td{overflow-wrap:anywhere}table.facts code{white-space:pre-wrap;overflow-wrap:anywhere}
"""


def inline_html(text: str) -> str:
    """Escape ``text`` and turn ``**bold**`` and ```code``` into HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


@dataclass
class Document:
    """An ordered list of blocks; :meth:`markdown` and :meth:`html` render it."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def subheading(self, text: str) -> None:
        self.blocks.append(("h3", text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def warn(self, text: str) -> None:
        self.blocks.append(("warn", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, heads: Sequence[str], body: Sequence[Sequence[str]], left: int = 0) -> None:
        self.blocks.append(("table", (list(heads), [list(r) for r in body], left)))

    def facts(self, rows: Sequence[tuple[str, str, bool]]) -> None:
        """Named facts, one a line: (name, value, value is code); the report's header."""
        if rows:
            self.blocks.append(("facts", [tuple(r) for r in rows]))

    def image(self, path: str, rel: str, caption: str) -> None:
        """A PNG at ``path`` (read when rendering HTML), linked from Markdown as ``rel``."""
        self.blocks.append(("img", (path, rel, caption)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, b in self.blocks:
            if kind == "h2":
                out += [f"## {b}", ""]
            elif kind == "h3":
                out += [f"### {b}", ""]
            elif kind == "p":
                out += [b, ""]
            elif kind == "warn":
                out += [f"> **Warning:** {b}", ""]
            elif kind == "ul":
                out += [f"- {item}" for item in b] + [""]
            elif kind == "facts":
                out += [f"- **{name}:** " + (f"`{value}`" if code else value) for name, value, code in b] + [""]
            elif kind == "table":
                heads, body, left = b
                out += [tables.markdown_grid(heads, body, left), ""]
            elif kind == "img":
                _path, rel, caption = b
                out += [f"![{caption}]({rel})", ""]
        return "\n".join(out)

    def html(self) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               '<meta name="viewport" content="width=device-width, initial-scale=1">',
               f"<title>{html.escape(self.title)}</title>", f"<style>{CSS}</style>", "</head><body>",
               f"<h1>{inline_html(self.title)}</h1>"]
        for kind, b in self.blocks:
            if kind == "h2":
                out.append(f"<h2>{inline_html(b)}</h2>")
            elif kind == "h3":
                out.append(f"<h3>{inline_html(b)}</h3>")
            elif kind == "p":
                out.append(f"<p>{inline_html(b)}</p>")
            elif kind == "warn":
                out.append(f'<p class="warn"><strong>Warning:</strong> {inline_html(b)}</p>')
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b) + "</ul>")
            elif kind == "facts":
                out.append('<table class="facts"><tbody>' + "".join(
                    f"<tr><th>{html.escape(name)}</th><td>"
                    + (f"<code>{html.escape(value)}</code>" if code else html.escape(value)) + "</td></tr>"
                    for name, value, code in b) + "</tbody></table>")
            elif kind == "table":
                heads, body, left = b
                out.append('<div class="scroll">' + tables.html_grid(heads, body, left) + "</div>")
            elif kind == "img":
                path, _rel, caption = b
                if os.path.exists(path):
                    with open(path, "rb") as fh:
                        data = base64.b64encode(fh.read()).decode("ascii")
                    out.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                               f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"
