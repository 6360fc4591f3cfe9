"""Plain-text tables for the terminal. Pure: summaries in, a string out."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.load_check import StageLoad
from analysis.summary import StageSummary

__all__ = ["format_ms", "render_load_table", "render_quota_note", "render_stage_table"]

_DASH = "–"


def format_ms(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    ms = seconds * 1000.0
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return _DASH if value is None else f"{value:,.{digits}f}"


def _errors(summary: StageSummary) -> str:
    if not summary.errors:
        return "0"
    parts = ", ".join(f"{k} {v}" for k, v in sorted(summary.errors.items(), key=lambda kv: -kv[1]))
    return f"{summary.error_count} ({parts})"


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _target(load: StageLoad) -> tuple[str, str]:
    """(target, offered) as text, in the stage's own unit."""
    if load.target_tokens_per_min:
        key = next(iter(load.target_tokens_per_min))
        offered = load.offered_tokens_per_min.get(key)
        return (
            f"{load.target_tokens_per_min[key]:,.0f} {key} tpm",
            _DASH if offered is None else f"{offered:,.0f} tpm",
        )
    if load.target_rps is not None:
        return f"{load.target_rps:.2f} rps", _num(load.offered_rps, 2) + " rps"
    return "closed loop", _num(load.offered_rps, 2) + " rps"


def render_load_table(loads: Sequence[StageLoad]) -> str:
    """Offered load against target and the generator's self-check, per stage."""
    rows: list[tuple[str, ...]] = [
        ("stage", "target", "offered", "lag p50", "lag p99", "no free user", "dropped", "gen CPU", "kept up")
    ]
    for load in loads:
        target, offered = _target(load)
        cpu = _DASH if load.generator_cpu_share is None else f"{load.generator_cpu_share:.0%}"
        rows.append(
            (
                load.stage,
                target,
                offered,
                format_ms(load.lag_p50_s),
                format_ms(load.lag_p99_s),
                str(load.no_free_user),
                str(load.dropped),
                cpu,
                ("yes" if load.kept_up else "NO") + (", capped" if load.capped else ""),
            )
        )
    return "\n".join(_table(rows))


def render_stage_table(summaries: Sequence[StageSummary]) -> str:
    """The per-stage table printed after a run: throughput, latency percentiles (ms), generator lag, errors."""
    header = (
        "stage",
        "requests",
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p95",
        "TPOT p50",
        "E2E p95",
        "lag p99",
        "errors",
    )
    rows = [header]
    for s in summaries:
        rows.append(
            (
                s.stage,
                str(s.requests),
                _num(s.req_per_s, 2),
                _num(s.output_tok_per_s, 1),
                format_ms(s.ttft["p50"]),
                format_ms(s.ttft["p95"]),
                format_ms(s.tpot["p50"]),
                format_ms(s.e2e["p95"]),
                format_ms(s.lag["p99"]),
                _errors(s),
            )
        )
    lines = _table(rows)
    lines.append("latencies in ms; TTFT/TPOT/E2E over successful requests; lag = started − scheduled")
    return "\n".join(lines)


def render_quota_note(summaries: Sequence[StageSummary], loads: Sequence[StageLoad]) -> str | None:
    """One line on rate limits: where 429s began, which quota they named, at what offered load. None if none."""
    offered = {load.stage: load for load in loads}
    for s in summaries:
        if not s.rate_limits:
            continue
        total = sum(s.rate_limits.values())
        binding, count = max(s.rate_limits.items(), key=lambda kv: kv[1])
        load = offered.get(s.stage)
        at = ""
        if load is not None and load.offered_rps is not None:
            at = f" at {load.offered_rps:.2f} req/s offered"
            tpm = load.offered_tokens_per_min
            if tpm:
                at += f" ({tpm['input']:,.0f} input + {tpm['output']:,.0f} output tokens/min)"
        share = total / s.requests if s.requests else 0.0
        return (
            f"quota: 429s began in {s.stage}{at}: {share:.0%} of requests rate-limited, "
            f"binding limit {binding} ({count} of {total}) — a quota ceiling, not server saturation"
        )
    return None
