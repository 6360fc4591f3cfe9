"""The report's asked vs served input length (:mod:`analysis.input_length`): the calibration line, a row per
class and stage, and the verdict, flagged when a deviation is beyond ±5 %."""

from __future__ import annotations

from analysis.input_length import InputLength, InputLengths
from reports.html.blocks import escape as _e
from reports.html.blocks import table as _table
from reports.input_table import length_cells

__all__ = ["input_length_html"]


def _row(g: InputLength) -> list[str]:
    return [g.scope, g.name, *length_cells(g)]


def input_length_html(lengths: InputLengths) -> str:
    """The block under the token-length chart (empty when nothing asked a length and nothing was calibrated)."""
    calibration = lengths.calibration
    if not lengths.asked_any and (calibration is None or not calibration.fits):
        return ""
    parts = []
    if calibration is not None and calibration.fits:
        parts.append(f'<p class="note">Prompt calibration: {_e(calibration.describe())}</p>')
    if lengths.asked_any:
        header = ["group", "name", "requests", "asked", "served", "deviation", "p5", "p95", ""]
        parts.append(_table(header, [_row(g) for g in lengths.groups], text=(0, 1, -1)))
    kind = "warn-note" if lengths.flagged else "note"
    parts.append(f'<p class="{kind}">{_e(lengths.summary())}</p>')
    return (
        '<div class="input-length"><h4>Input length: asked vs served (the server\'s tokens)</h4>'
        + "".join(parts)
        + "</div>"
    )
