"""The report page: one self-contained HTML document from :class:`~reports.html.collect.RunView` s.

Every piece of text that comes from a run — stage and class names, error messages, model output, the command
line — goes through :func:`_e` (``html.escape``), so hostile output such as ``<script>`` or ``</table>`` shows as
text. No script, no external stylesheet, font, image or link target outside the page: the file opens the same
offline, forwarded by mail, or printed to PDF.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Collection, Iterable, Sequence

from analysis.summary import StageSummary
from loadtest.client.scrub import public_argv
from loadtest.rundir import Sample, SampleText
from reports.console import format_ms, format_number, format_target
from reports.html.answer import plan_line, verdict_lines
from reports.html.charts import (
    capacity_chart,
    cdf_chart,
    cost_volume_chart,
    figure_html,
    plan_chart,
    timeline_chart,
    token_chart,
    tpot_fit_chart,
)
from reports.html.collect import RunView
from reports.html.compare import comparison_section
from reports.html.style import CSS
from reports.plan_table import format_money, format_ppt, format_provisioned, format_tokens

__all__ = ["render_page"]

_DASH = "–"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return _DASH
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], text: Collection[int] = (0,), cls: str = ""
) -> str:
    """An HTML table; cells are escaped here. The columns ``text`` (indices, negative from the end) are text,
    left-aligned and wrapped; the others numbers, right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    texts = {i % len(header) for i in text}
    body = []
    for row in rows:
        cells = "".join(
            f"<td>{_e(c)}</td>" if i in texts else f'<td class="num">{_e(c)}</td>' for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    klass = f' class="{cls}"' if cls else ""
    table = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


# --- the first screen --------------------------------------------------------------------------------------


def _what_was_run(view: RunView, vid: str) -> str:
    m = view.manifest
    spec = m.spec
    endpoint = spec.endpoint.public()
    if m.simulator is not None:
        target = f"embedded simulator ({m.simulator.settings.describe() or 'defaults'})"
    else:
        target = str(endpoint.get("base_url", _DASH))
    stages = (
        f"automatic sweep, up to {spec.sweep.points} rates ({spec.sweep.duration_s:g} s each)"
        if spec.sweep
        else ", ".join(s.label for s in spec.stages)
    )
    classes = ", ".join(
        f"{c.name} (weight {c.weight:g})" if len(spec.request_classes) > 1 else c.name
        for c in spec.request_classes
    )
    versions = ", ".join(f"{k} {v}" for k, v in sorted(m.versions.items()))
    rows = [
        ("scenario", spec.scenario_source or "command-line flags"),
        ("endpoint", target),
        ("model", spec.endpoint.model),
        ("classes", classes),
        ("stages", stages),
        ("seed", str(m.seed)),
        ("started", _when(m.created_at)),
        ("took", _duration(view.duration_s)),
        ("requests", f"{view.requests:,}"),
        (
            "host",
            f"{m.host.platform}, {m.host.cpus or '?'} CPUs; {m.distribution.processes} load process(es)",
        ),
        ("versions", versions),
        (
            "command",
            " ".join(public_argv(m.command)),
        ),  # again: a manifest written before commands were cleaned
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<section class="card" id="{vid}-run"><h3>What was run</h3><dl>{items}</dl></section>'


def _verdict(view: RunView, vid: str) -> str:
    headline, interval, details = verdict_lines(view)
    no_verdict = view.capacity.max_rps is None
    kind = "bad" if no_verdict else ("warn" if view.validity.doubtful else "good")
    lis = "".join(f"<li>{_e(d)}</li>" for d in details)
    plan = _plan_headline(view)
    return (
        f'<section class="card verdict {kind}" id="{vid}-verdict"><h3>Verdict</h3>'
        f'<p class="headline">{_e(headline)}</p><p class="interval">{_e(interval)}</p><ul>{lis}</ul>{plan}</section>'
    )


def _plan_headline(view: RunView) -> str:
    return f'<p class="plan-line">{_e(plan_line(view))}</p>'


def _validity(view: RunView, vid: str) -> str:
    rows = "".join(
        f'<li class="{"doubt" if doubtful else "ok"}"><strong>{_e(label)}</strong>: {_e(text)}</li>'
        for label, text, doubtful in view.validity.items
    )
    summary = (
        "doubtful — read the flagged items before acting on the numbers"
        if view.validity.doubtful
        else "valid: nothing found that distorts the measurement"
    )
    kind = "warn" if view.validity.doubtful else "good"
    return (
        f'<section class="card validity {kind}" id="{vid}-validity"><h3>Validity</h3>'
        f"<p>{_e(summary)}</p><ul>{rows}</ul></section>"
    )


# --- the sections below ------------------------------------------------------------------------------------


def _summary_rows(summaries: Sequence[StageSummary], by_class: bool) -> list[list[str]]:
    rows = []
    for s in summaries:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "0"
        stage = "(all stages)" if s.stage == "*" else s.stage
        first = [stage, s.request_class or _DASH] if by_class else [stage]
        rows.append(
            [
                *first,
                f"{s.requests:,}",
                format_number(s.req_per_s, 2),
                format_number(s.output_tok_per_s, 1),
                format_ms(s.ttft.get("p50")),
                format_ms(s.ttft.get("p95")),
                format_ms(s.tpot.get("p50")),
                format_ms(s.itl.get("p50")),
                format_ms(s.e2e.get("p95")),
                format_ms(s.lag.get("p99")),
                _DASH if s.attainment is None else f"{s.attainment:.1%}",
                errors,
            ]
        )
    return rows


_SUMMARY_HEADER = [
    "requests",
    "req/s",
    "out tok/s",
    "TTFT p50",
    "TTFT p95",
    "TPOT p50",
    "ITL p50",
    "E2E p95",
    "lag p99",
    "SLO met",
    "errors",
]


def _tables(view: RunView, vid: str) -> str:
    stage_table = _table(["stage", *_SUMMARY_HEADER], _summary_rows(view.stages, False), text=(0, -1))
    class_table = _table(
        ["stage", "class", *_SUMMARY_HEADER], _summary_rows(view.classes, True), text=(0, 1, -1)
    )
    load_rows = []
    for load in view.loads:
        target, offered = format_target(load)
        kept = "yes" if load.kept_up else f"no: {load.reason}"
        if load.kept_up and load.capped:
            kept += f", capped: {load.reason}"
        load_rows.append(
            [
                load.stage,
                target,
                offered,
                format_ms(load.lag_p50_s),
                format_ms(load.lag_p99_s),
                f"{load.no_free_user:,}",
                f"{load.dropped:,}",
                _DASH if load.generator_cpu_share is None else f"{load.generator_cpu_share:.0%}",
                kept,
            ]
        )
    load_table = _table(
        [
            "stage",
            "target",
            "offered",
            "lag p50 (ms)",
            "lag p99 (ms)",
            "no free user",
            "dropped",
            "gen CPU",
            "kept up",
        ],
        load_rows,
        text=(0, -1),
    )
    return (
        f'<section id="{vid}-tables"><h3>Per stage</h3><p class="note">Latencies in ms over successful requests; '
        f"rates over each stage's span, first start to last end (vLLM's benchmark duration; the capacity curve's "
        f"rates are over the stage's sending window, so they can be higher); SLO met = share of requests meeting "
        f"every SLO of their class.</p>"
        f"{stage_table}<h3>Per class</h3>{class_table}<h3>The generator</h3>{load_table}</section>"
    )


def _errors(view: RunView, vid: str) -> str:
    if not view.errors:
        return f'<section id="{vid}-errors"><h3>Errors</h3><p>No request failed.</p></section>'
    rows = [
        [
            row.error_class,
            f"{row.count:,}",
            f"{row.share:.2%}",
            "\n".join(f"{n:,}× {msg}" for msg, n in row.examples) or _DASH,
        ]
        for row in view.errors
    ]
    table = _table(
        ["error class", "requests", "share", "most common messages"], rows, text=(0, 3), cls="errors"
    )
    return f'<section id="{vid}-errors"><h3>Errors</h3>{table}</section>'


def _text(value: SampleText | None) -> str:
    """A stored text, escaped, in a ``<pre>``, saying when it was cut."""
    if value is None:
        return '<p class="note">not collected</p>'
    cut = f"\n… (cut at {len(value.text):,} of {value.chars:,} characters)" if value.truncated else ""
    return f'<pre class="sample">{_e(value.text + cut)}</pre>'


def _sample(sample: Sample) -> str:
    outcome = "ok" if sample.ok else f"{sample.error_class} ({sample.status or 'no status'})"
    facts = [
        f"stage {sample.stage}",
        f"seq {sample.seq}",
        outcome,
        f"TTFT {format_ms(sample.ttft_s)} ms",
        f"E2E {format_ms(sample.e2e_s)} ms",
        f"{sample.prompt_tokens if sample.prompt_tokens is not None else _DASH} in / "
        f"{sample.output_tokens if sample.output_tokens is not None else _DASH} out",
    ]
    if sample.finish_reason:
        facts.append(f"finish {sample.finish_reason}")
    req = sample.request
    params = ", ".join(f"{k}={v}" for k, v in req.params.items())
    head = f"{req.kind} · model {req.model or _DASH} · max_tokens {req.max_tokens or _DASH}"
    head += f" · {'streamed' if req.stream else 'not streamed'}" + (f" · {params}" if params else "")
    if req.messages:
        shown = "\n\n".join(
            f"[{m.role}] {m.content.text}" + ("…" if m.content.truncated else "") for m in req.messages
        )
        more = req.messages_total - len(req.messages)
        if more > 0:
            shown += f"\n\n… and {more} more messages"
        asked = f'<pre class="sample">{_e(shown)}</pre>'
    else:
        asked = _text(req.prompt)
    parts = [
        f'<div class="sample-card"><p class="sample-head"><strong>{_e(sample.request_class)}</strong> — '
        f"{_e(' · '.join(facts))}</p>",
        f'<p class="note">request: {_e(head)}</p>{asked}',
    ]
    if sample.error_detail:
        parts.append(f'<p class="note">error: {_e(sample.error_detail)}</p>')
    if sample.response is not None or sample.ok:
        parts.append(f'<p class="note">response:</p>{_text(sample.response)}')
    if sample.error_body is not None:
        parts.append(f'<p class="note">error body:</p>{_text(sample.error_body)}')
    parts.append("</div>")
    return "".join(parts)


def _samples(view: RunView, vid: str) -> str:
    intro = (
        "A few requests per class as sent and what came back, stored while the run ran — the first successes of "
        "each class and the first failures of each error class; texts redacted and cut at 2,000 characters, "
        "shown as text."
    )
    body = "".join(_sample(s) for s in view.samples) or f"<p>{_e(view.samples_note or 'no samples')}</p>"
    head = f'<h3>Sample requests and responses</h3><p class="note">{_e(intro)}</p>'
    return f'<section id="{vid}-samples">{head}{body}</section>'


def _plan_section(view: RunView, vid: str) -> str:
    plan = view.plan
    if isinstance(plan, str):
        return f'<section id="{vid}-plan"><h3>Provisioning plan</h3><p>{_e(plan)}</p></section>'
    f = plan.forecast
    example = (
        " This is an example forecast, not yours: set [plan] peak_tpm or --peak-tpm."
        if plan.request.example
        else ""
    )
    slos = (
        ", ".join(
            f"{name} ≤ {format_ms(value)} ms (mean)"
            for name, value in (("TTFT", plan.slos.ttft_s), ("TPOT", plan.slos.tpot_s))
            if value
        )
        or "none"
    )
    if plan.slos.ttft_s is not None or plan.slos.tpot_s is not None:
        slos += (
            " — the tightest of the run's percentile SLOs, which the model checks on its mean latencies, so "
            "estimated rows are optimistic against a percentile"
        )
    intro = (
        f"Forecast: peak {f.peak_tokens_per_min:,.0f} tokens/min ({f.peak_requests_per_s:,.2f} req/s) at the run's "
        f"mix of {f.prompt_tokens} in / {f.output_tokens} out, {format_tokens(f.tokens_per_month)} tokens/month; "
        f"headroom {plan.request.headroom:.0%}; SLOs {slos}; GPU {plan.gpu}; prices: {plan.prices.label}.{example}"
    )
    rows = [
        [
            r.architecture,
            r.source,
            f"{r.replica_slo_tokens_per_s:,.0f}",
            f"{r.mix_ratio:.2f}",
            r.binds,
            format_provisioned(r),
            format_money(r.pt_cost_per_month),
            format_ppt(r),
            format_money(r.ppt_cost_per_month),
            format_tokens(r.break_even_tokens_per_month),
        ]
        for r in plan.rows
    ]
    table = _table(
        [
            "architecture",
            "basis",
            "SLO tok/s per replica",
            "mix / reference",
            "binds",
            "provisioned throughput",
            "PT $/month",
            "pay-per-token",
            "PPT $/month",
            "break-even tokens/month",
        ],
        rows,
        text=(0, 1, 4, 5, 7),
    )
    measured = plan.measured
    basis = ""
    if measured is not None:
        ci = f"± {measured.relative_ci:.0%}, 95 %" if measured.relative_ci is not None else "no interval"
        bound = " (a lower bound: every stage met the SLOs)" if measured.lower_bound else ""
        basis = (
            f"<p>Measured row: {measured.slo_tokens_per_s:,.0f} tokens/s within the SLOs on a band of "
            f"{measured.band_tokens_per_s:,.0f} tokens/s ({_e(ci)}){_e(bound)}; "
            f"limit: {_e(measured.limit_detail)}. Estimated rows are the roofline model's "
            "(docs/capacity-model.md), not measured.</p>"
        )
    notes = "".join(f"<li>{_e(r.architecture)}: confidence {_e(r.confidence)}</li>" for r in plan.rows)
    notes += "".join(f"<li>{_e(r.architecture)}: {_e(n)}</li>" for r in plan.rows for n in r.notes) + "".join(
        f"<li>{_e(n)}</li>" for n in plan.notes
    )
    notes_html = f'<ul class="note">{notes}</ul>' if notes else ""
    charts = figure_html(plan_chart(f"{vid}-plan-chart", plan.rows)) + figure_html(
        cost_volume_chart(f"{vid}-cost-volume", plan.rows[0], f)
    )
    return (
        f'<section id="{vid}-plan"><h3>Provisioning plan</h3><p>{_e(intro)}</p>{basis}{table}{notes_html}{charts}'
        "</section>"
    )


def _run_body(view: RunView, vid: str) -> str:
    """One run's article; ``vid`` (``r0``, ``r1``, …) prefixes its ids on the page."""
    status = view.manifest.status
    kind = "good" if status == "complete" else "bad"
    banner = ""
    if status != "complete":
        what = {
            "interrupted": "This run was <strong>interrupted</strong>",
            "failed": "This run <strong>failed</strong>: the load engine stopped with an error (see engine.log)",
            "running": "This run was <strong>still running</strong> (or its runner died) when the report was made",
        }.get(status, f"This run's status is <strong>{_e(status)}</strong>")
        banner = (
            f'<p class="banner bad">{what}: the figures cover what was recorded before it stopped; its last stage '
            "may be cut short.</p>"
        )
    if view.requests == 0:
        banner += '<p class="banner bad">The run recorded no requests: there is nothing to chart.</p>'
    charts = [
        capacity_chart(f"{vid}-capacity", [(view.name, view.capacity)], view.slos),
        cdf_chart(f"{vid}-cdf", view.cdfs),
        tpot_fit_chart(f"{vid}-tpot-fit", view.capacity),
    ]
    line = timeline_chart(f"{vid}-timeline", view.timeline, view.stage_windows) if view.timeline else None
    tokens = token_chart(f"{vid}-tokens", view.input_tokens, view.output_tokens, view.asked_input)
    cap_text = ""
    cap = view.capacity
    if cap.points:
        sat = (
            f"saturation: {format_number(cap.saturation_rps, 2)} req/s, "
            f"{format_number(cap.saturation_output_tok_per_s, 0)} output tok/s "
            f"({cap.saturation_stage}: the most achieved)"
        )
        cap_text = f'<p class="note">{_e(sat)}</p>'
    return (
        f'<article class="run" id="{vid}"><header><h2>{_e(view.name)} {_badge(status, kind)}</h2></header>{banner}'
        f'<div class="first-screen">{_verdict(view, vid)}{_validity(view, vid)}{_what_was_run(view, vid)}</div>'
        f'<section id="{vid}-capacity-section"><h3>Capacity</h3>{cap_text}{figure_html(charts[0])}</section>'
        f"{_plan_section(view, vid)}"
        f'<section id="{vid}-latency"><h3>Latency</h3>{figure_html(charts[1])}{figure_html(charts[2])}</section>'
        f'<section id="{vid}-time"><h3>Over time</h3>{figure_html(line)}</section>'
        f'<section id="{vid}-token-lengths"><h3>Token lengths</h3>{figure_html(tokens)}</section>'
        f"{_tables(view, vid)}{_errors(view, vid)}{_samples(view, vid)}</article>"
    )


def render_page(views: Sequence[RunView], version: str) -> str:
    """The whole document for one run, or several with a comparison first."""
    title = views[0].name if len(views) == 1 else f"comparison of {len(views)} runs"
    heading = "Load test report" if len(views) == 1 else f"Load test report — {title}"
    nav = "".join(f'<a href="#r{n}">{_e(v.name)}</a>' for n, v in enumerate(views)) if len(views) > 1 else ""
    nav_html = f'<nav><a href="#comparison">comparison</a>{nav}</nav>' if nav else ""
    compare = comparison_section(views) if len(views) > 1 else ""
    body = "".join(_run_body(v, f"r{n}") for n, v in enumerate(views))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>loadtest report — {_e(title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{_e(heading)}</h1>{nav_html}{compare}{body}"
        f"<footer>Made by llm-loadtest {_e(version)} from the run director{'y' if len(views) == 1 else 'ies'} "
        f"{_e(', '.join(v.name for v in views))}. Definitions (TTFT, TPOT, ITL, E2E, lag, goodput) are in the "
        "project's docs/metrics.md; the report can be rebuilt at any time with <code>loadtest report RUN</code>."
        "</footer></main></body></html>\n"
    )
