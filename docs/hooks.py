"""MkDocs hooks: parts of the documentation drawn from the code at build time.

The status machine page holds the marker ``<!-- status-diagram -->``; the build
replaces it with a Mermaid ``stateDiagram-v2`` generated from
:data:`tasklib.status.TRANSITIONS`, one edge per entry of the table, so the
picture cannot drift from the rules. ``tests/test_docs.py`` checks the edges.

Docstrings use Sphinx roles (``:class:`Task```); Markdown renders the role's name
as text before the code, so :func:`on_page_content` drops it.
"""

from __future__ import annotations

import re
from typing import Any

from tasklib.status import TRANSITIONS

MARKER = "<!-- status-diagram -->"

_ROLE = re.compile(r":(?:class|func|meth|attr|exc|mod|data|obj):(?=<code>)")
_replaced = 0  # pages where the marker was replaced in this build


def status_diagram() -> str:
    """The Mermaid source of the status machine: ``SRC --> DST : event`` per table entry.

    The pseudo-state ``[*]`` marks where a task begins (submit) and the terminal
    statuses; those edges are not table entries.
    """
    lines = ["stateDiagram-v2", "    [*] --> ENQUEUED : submit"]
    for src, row in TRANSITIONS.items():
        for event, dst in row.items():
            lines.append(f"    {src.value} --> {dst.value} : {event.value}")
    lines += [f"    {status.value} --> [*]" for status, row in TRANSITIONS.items() if not row]
    return "\n".join(lines)


def on_pre_build(config: Any) -> None:
    global _replaced
    _replaced = 0


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    global _replaced
    if MARKER not in markdown:
        return markdown
    _replaced += 1
    return markdown.replace(MARKER, f"```mermaid\n{status_diagram()}\n```")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return _ROLE.sub("", html)


def on_post_build(config: Any) -> None:
    # A page that lost its marker would silently lose the diagram: fail instead.
    if not _replaced:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"no page holds {MARKER}: the status diagram was not drawn")
