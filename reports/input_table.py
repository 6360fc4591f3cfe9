"""The asked vs served input length table (:mod:`analysis.input_length`), as ``loadtest analyze`` prints it."""

from __future__ import annotations

from analysis.input_length import DEVIATION_LIMIT, InputLength, InputLengths
from reports.console import text_table

__all__ = ["length_cells", "render_input_lengths"]

_DASH = "—"


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{value:+.1%}"


def length_cells(g: InputLength) -> tuple[str, ...]:
    """A group's cells as the console and the report show them: requests, mean asked and served, the deviation, its
    p5 and p95, and the verdict."""
    return (
        f"{g.requests:,}",
        _DASH if g.asked is None else f"{g.asked:,.1f}",
        _DASH if g.served is None else f"{g.served:,.1f}",
        _pct(g.deviation),
        _pct(g.p5),
        _pct(g.p95),
        f"beyond ±{DEVIATION_LIMIT:.0%}" if g.flagged else ("no usage" if g.deviation is None else "ok"),
    )


def _row(g: InputLength) -> tuple[str, ...]:
    return (f"{g.scope} {g.name}", *length_cells(g))


def render_input_lengths(lengths: InputLengths) -> str:
    """``input length (asked vs served):``, the calibration line, a row per class and stage, and the verdict."""
    lines = ["input length (asked vs served, in the server's tokens):"]
    if lengths.calibration is not None and lengths.calibration.fits:
        lines.append(f"  prompts: {lengths.calibration.describe()}")
    if lengths.asked_any:
        header = ("group", "requests", "asked", "served", "deviation", "p5", "p95", "")
        lines += ["  " + line for line in text_table([header, *(_row(g) for g in lengths.groups)])]
    lines.append(f"  {lengths.summary()}")
    return "\n".join(lines)
