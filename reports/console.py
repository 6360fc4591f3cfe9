"""Plain-text tables for the terminal. Pure: summaries in, a string out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from analysis.capacity import CapacityResult
from analysis.fit import LatencyPrediction
from analysis.load_check import StageLoad
from analysis.summary import StageSummary

__all__ = [
    "format_ci",
    "format_ms",
    "format_number",
    "format_target",
    "render_capacity",
    "render_load_table",
    "render_predictions",
    "render_quota_note",
    "render_stage_table",
    "render_summary_table",
    "summary_csv_rows",
    "text_table",
]

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


def format_number(value: float | None, digits: int = 1) -> str:
    return _DASH if value is None else f"{value:,.{digits}f}"


def _errors(summary: StageSummary) -> str:
    if not summary.errors:
        return "0"
    parts = ", ".join(f"{k} {v}" for k, v in sorted(summary.errors.items(), key=lambda kv: -kv[1]))
    return f"{summary.error_count} ({parts})"


def text_table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned text: the first column left-aligned, the last unpadded, the rest right-aligned; a rule
    under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def format_target(load: StageLoad) -> tuple[str, str]:
    """(target, offered) as text, in the stage's own unit; a Python scenario's target in flows/s and in requests/s."""
    if load.target_tokens_per_min:
        key = next(iter(load.target_tokens_per_min))
        offered = load.offered_tokens_per_min.get(key)
        return (
            f"{load.target_tokens_per_min[key]:,.0f} {key} tpm",
            _DASH if offered is None else f"{offered:,.0f} tpm",
        )
    sent = format_number(load.offered_rps, 2) + " rps"
    if load.target_flows_per_s is not None:  # a Python scenario's arrival starts a flow
        rps = "" if load.target_rps is None else f" ({load.target_rps:.2f} rps)"
        return f"{load.target_flows_per_s:.2f} flows/s{rps}", sent
    if load.target_rps is not None:
        return f"{load.target_rps:.2f} rps", sent
    if load.kind == "idle":
        return "idle", _DASH
    return "closed loop", sent


def render_load_table(loads: Sequence[StageLoad]) -> str:
    """Offered load against target and the generator's self-check, per stage (lags and loop delay in ms)."""
    rows: list[tuple[str, ...]] = [
        (
            "stage",
            "target",
            "offered",
            "lag p50",
            "lag p99",
            "no free user",
            "dropped",
            "gen CPU",
            "loop delay p99",
            "kept up",
        )
    ]
    for load in loads:
        target, offered = format_target(load)
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
                format_ms(load.loop_delay_p99_s),
                ("yes" if load.kept_up else "NO") + (", capped" if load.capped else ""),
            )
        )
    return "\n".join(text_table(rows))


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
                format_number(s.req_per_s, 2),
                format_number(s.output_tok_per_s, 1),
                format_ms(s.ttft["p50"]),
                format_ms(s.ttft["p95"]),
                format_ms(s.tpot["p50"]),
                format_ms(s.e2e["p95"]),
                format_ms(s.lag["p99"]),
                _errors(s),
            )
        )
    lines = text_table(rows)
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


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{value:.1%}"


def _other_errors(summary: StageSummary) -> str:
    other = {k: v for k, v in summary.errors.items() if k != "rate_limited"}
    if not other:
        return "0"
    return ", ".join(f"{k} {v}" for k, v in sorted(other.items(), key=lambda kv: -kv[1]))


def _limits(summary: StageSummary) -> str:
    if not summary.rate_limits:
        return "0"
    return ", ".join(f"{k} {v}" for k, v in sorted(summary.rate_limits.items(), key=lambda kv: -kv[1]))


def render_summary_table(summaries: Sequence[StageSummary]) -> str:
    """The ``loadtest analyze`` table: one row per stage, class or (stage, class); latencies in ms."""
    header: tuple[str, ...] = (
        "stage",
        "class",
        "requests",
        "req/s",
        "in tok/s",
        "out tok/s",
        "tot tok/s",
        "goodput",
        "attain.",
    )
    header += ("TTFT p50", "TTFT p95", "TTFT p99", "TPOT p50", "TPOT p95", "ITL p95", "E2E p95", "lag p99")
    header += ("tokens from", "mismatch", "429 (limit)", "other errors")
    rows: list[tuple[str, ...]] = [header]
    for s in summaries:
        good = _DASH if s.goodput_rps is None else f"{s.goodput_rps:,.2f}"
        rows.append(
            (
                s.stage,
                s.request_class or "*",
                str(s.requests),
                format_number(s.req_per_s, 2),
                format_number(s.input_tok_per_s, 1),
                format_number(s.output_tok_per_s, 1),
                format_number(s.total_tok_per_s, 1),
                good,
                _pct(s.attainment),
                format_ms(s.ttft["p50"]),
                format_ms(s.ttft["p95"]),
                format_ms(s.ttft["p99"]),
                format_ms(s.tpot["p50"]),
                format_ms(s.tpot["p95"]),
                format_ms(s.itl["p95"]),
                format_ms(s.e2e["p95"]),
                format_ms(s.lag["p99"]),
                _token_sources(s.token_sources),
                _pct(s.mismatch_share),
                _limits(s),
                _other_errors(s),
            )
        )
    lines = text_table(rows)
    lines.append(
        "latencies in ms over successful requests; goodput = requests/s meeting every SLO of their class, "
        "attain. = good / all; tokens from = the server's usage counts or the client's chunk count; "
        "mismatch = share of records whose client chunk count is > 10 % off the usage count"
    )
    return "\n".join(lines)


def _token_sources(sources: Mapping[str, int]) -> str:
    """``usage``, ``client`` or ``usage 80 %``: where the token counts came from."""
    total = sum(sources.values())
    if not total:
        return _DASH
    top, count = max(sources.items(), key=lambda kv: kv[1])
    return top if count == total else f"{top} {count / total:.0%}"


def summary_csv_rows(summaries: Sequence[StageSummary]) -> list[dict[str, object]]:
    """Flat rows (one per summary) for CSV: percentile dicts become ``ttft_p95_s`` etc., counts ``errors_<class>``."""
    out: list[dict[str, object]] = []
    for s in summaries:
        row: dict[str, object] = {"stage": s.stage, "request_class": s.request_class or "*"}
        for name in ("requests", "ok", "duration_s", "req_per_s", "input_tok_per_s", "output_tok_per_s"):
            row[name] = getattr(s, name)
        row.update(total_tok_per_s=s.total_tok_per_s, good=s.good, goodput_rps=s.goodput_rps)
        row.update(
            attainment=s.attainment, mismatch_checked=s.mismatch_checked, mismatch_share=s.mismatch_share
        )
        for metric in ("ttft", "tpot", "itl", "e2e", "lag"):
            for key, value in getattr(s, metric).items():
                row[f"{metric}_{key}_s"] = value
        for kind, count in s.errors.items():
            row[f"errors_{kind}"] = count
        for kind, count in s.rate_limits.items():
            row[f"rate_limited_{kind}"] = count
        for source, count in s.token_sources.items():
            row[f"token_source_{source}"] = count
        out.append(row)
    return out


def format_ci(pair: tuple[float | None, float | None], digits: int, unit: str = "") -> str:
    """A 95 % interval as text, saying which bound is missing (too few requests to find it)."""
    low, high = pair
    unit = f" {unit}" if unit else ""
    if low is None and high is None:
        return "no 95 % CI: too few requests"
    if high is None:
        return f"95 % CI from {format_number(low, digits)}{unit}, no upper bound"
    if low is None:
        return f"95 % CI up to {format_number(high, digits)}{unit}, no lower bound"
    return f"95 % CI {format_number(low, digits)} – {format_number(high, digits)}{unit}"


def render_capacity(result: CapacityResult) -> str:
    """The capacity curve (one row per stage) and the answers under it."""
    header = ("stage", "req/s", "out tok/s", "in flight", "TTFT p95", "TPOT mean", "E2E p50", "429", "SLOs")
    rows = [header]
    for p in result.points:
        verdict = "met" if p.meets("point") else "broken"
        if p.meets("point") and not p.meets("conservative"):
            verdict = "met (not at 95 % CI)"
        rows.append(
            (
                p.stage,
                format_number(p.req_per_s, 2),
                format_number(p.output_tok_per_s, 1),
                format_number(p.concurrency, 1),
                format_ms(p.ttft["p95"]),
                format_ms(p.tpot_mean),
                format_ms(p.e2e["p50"]),
                str(p.rate_limited),
                verdict + (", queue grew" if p.queue_growth else ""),
            )
        )
    lines = text_table(rows)

    no_slos = result.basis.startswith("the run has no SLOs")
    what = "max throughput (no SLOs given)" if no_slos else "max SLO-compliant throughput"
    if result.max_rps is None:
        lines.append(f"{what}: none ({result.basis})")
    else:
        lines.append(
            f"{what}: {result.max_rps:,.2f} req/s ({format_ci(result.max_rps_ci, 2)}), "
            f"{format_number(result.max_output_tok_per_s, 0)} output tok/s "
            f"({format_ci(result.max_output_tok_per_s_ci, 0)})"
        )
        lines.append(f"  {result.basis}")
    knee = (
        _DASH
        if result.knee_stage is None
        else f"{result.knee_stage} ({format_number(result.knee_rps, 2)} req/s)"
    )
    lines.append(f"knee: {knee}")
    lines.append(
        f"saturation: {format_number(result.saturation_rps, 2)} req/s, "
        f"{format_number(result.saturation_output_tok_per_s, 0)} output tok/s (max achieved, {result.saturation_stage})"
    )
    lines.append(f"binding limit: {result.limit or 'none reached'} — {result.limit_detail}")
    lines += [f"  server metrics: {evidence}" for evidence in result.server_evidence]
    fit = result.tpot_fit
    if fit is not None:
        r2 = _DASH if fit.r2 is None else f"{fit.r2:.3f}"
        lines.append(
            f"fit: TPOT ≈ {fit.t0 * 1000:.2f} ms + {fit.t1 * 1000:.3f} ms × in-flight (R² {r2}, "
            f"{fit.points} stages, in flight {fit.x_min:.1f}–{fit.x_max:.1f})"
        )
    return "\n".join(lines)


def render_predictions(predictions: Sequence[LatencyPrediction | None]) -> str:
    """``loadtest analyze --predict``: latency at untested rates from the TPOT fit and Little's law."""
    if not predictions or all(p is None for p in predictions):
        return (
            "prediction: none (the run has no TPOT fit: it needs two stages with different in-flight counts)"
        )
    rows: list[tuple[str, ...]] = [("rate req/s", "in flight", "TPOT", "E2E", "note")]
    for p in predictions:
        if p is None:
            continue
        note = p.note
        if p.extrapolated:
            note = "EXTRAPOLATED: " + (
                note.split(":", 1)[1] if note.lower().startswith("extrapolated:") else note
            )
        rows.append(
            (
                f"{p.rate_rps:,.2f}",
                format_number(p.concurrency, 1),
                format_ms(p.tpot_s),
                format_ms(p.e2e_s),
                note.strip(),
            )
        )
    return "\n".join([*text_table(rows), "predicted latencies in ms"])
