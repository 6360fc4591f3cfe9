"""The cold-start measures (:mod:`analysis.coldstart`) as ``loadtest analyze`` and ``loadtest run`` print them."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.coldstart import ColdStart
from reports.console import format_number

__all__ = ["cold_start_facts", "cold_start_line", "render_cold_starts", "sparkline"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_SPARK_BINS = 60


def sparkline(values: Sequence[float]) -> str:
    """One block per value, scaled to the largest (at most 60, then ``…``); all zero: the lowest block."""
    shown = list(values[:_SPARK_BINS])
    top = max(shown, default=0.0)
    line = "".join(
        _BLOCKS[min(len(_BLOCKS) - 1, int(v / top * (len(_BLOCKS) - 1) + 0.5))] if top > 0 else _BLOCKS[0]
        for v in shown
    )
    return line + ("…" if len(values) > _SPARK_BINS else "")


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} s"


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _first_request(cs: ColdStart) -> str:
    first = cs.first_request
    if first.outcome == "ok":
        return f"ok, TTFT {_s(first.ttft_s)}, E2E {_s(first.e2e_s)}"
    return f"{first.outcome} after {_s(first.e2e_s)}"


def _errors_before(cs: ColdStart) -> str:
    if not cs.errors_before_first_success:
        return "none"
    kinds = ", ".join(f"{k} × {n:,}" for k, n in cs.errors_before_first_success.items())
    return f"{sum(cs.errors_before_first_success.values()):,} ({kinds})"


def _settled(cs: ColdStart) -> str:
    if not cs.errors:
        return "no errors in the stage"
    if cs.errors_settled:
        return f"≤ 1 % from {_s(cs.errors_settled_s)} on ({cs.errors:,} errors in the stage)"
    return f"did not fall to ~0 before the stage ended ({cs.errors:,} errors in the stage)"


def _ramp(cs: ColdStart) -> str:
    if cs.plateau is None:
        return "no plateau: the stage's second half holds no whole bin"
    return (
        f"plateau {format_number(cs.plateau, 1)} {cs.ramp_unit}; 90 % of it after {_s(cs.time_to_90pct_s)} "
        f"(bins of {cs.bin_s:g} s)"
    )


def cold_start_facts(cs: ColdStart) -> list[tuple[str, str]]:
    """(name, value) rows of one burst's measures, as the report's table and ``analyze`` show them."""
    return [
        (
            "stage",
            f"{cs.stage}: {cs.requests:,} requests after {cs.after} ({_duration(cs.idle_s)} without any)",
        ),
        ("first request", _first_request(cs)),
        ("first token", _s(cs.first_token_s)),
        ("first success", _s(cs.first_success_s)),
        ("errors before the first success", _errors_before(cs)),
        ("error rate", _settled(cs)),
        ("throughput ramp", _ramp(cs)),
    ]


def cold_start_line(cs: ColdStart) -> str:
    """One line for ``loadtest run``'s answer."""
    errors = _errors_before(cs)
    return (
        f"cold start: {cs.stage} after {_duration(cs.idle_s)} idle — first success after "
        f"{_s(cs.first_success_s)}{'' if errors == 'none' else f', {errors} errors before it'}; "
        f"90 % of the plateau after {_s(cs.time_to_90pct_s)}"
    )


def render_cold_starts(found: Sequence[ColdStart]) -> str:
    """One block per burst after idle: its facts (:func:`cold_start_facts`, times from its first request) and the
    ramp as a sparkline (docs/metrics.md, "Cold start")."""
    blocks = []
    for cs in found:
        facts = cold_start_facts(cs)
        width = max(len(name) for name, _ in facts)
        lines = ["cold start (times from the burst's first request):"]
        lines += [f"  {name:<{width}}  {value}" for name, value in facts]
        lines.append(f"  {'':<{width}}  {sparkline(cs.ramp)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
