"""What the report's sections share: escaping and tables. Every text from a run goes through :func:`escape`."""

from __future__ import annotations

import html
from collections.abc import Collection, Iterable, Sequence

__all__ = ["DASH", "escape", "table"]

DASH = "–"


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def table(
    header: Sequence[str], rows: Iterable[Sequence[str]], text: Collection[int] = (0,), cls: str = ""
) -> str:
    """An HTML table; cells are escaped here. The columns ``text`` (indices, negative from the end) are text,
    left-aligned and wrapped; the others numbers, right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    texts = {i % len(header) for i in text}
    body = []
    for row in rows:
        cells = "".join(
            f"<td>{escape(c)}</td>" if i in texts else f'<td class="num">{escape(c)}</td>'
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    klass = f' class="{cls}"' if cls else ""
    table = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'
