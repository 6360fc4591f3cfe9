"""The report page: one self-contained HTML document from :class:`~reports.html.collect.RunView` s.

Every piece of text that comes from a run — stage and class names, error messages, model output, the command
line — goes through :func:`_e` (``html.escape``), so hostile output such as ``<script>`` or ``</table>`` shows as
text. No script, no external stylesheet, font, image or link target outside the page: the file opens the same
offline, forwarded by mail, or printed to PDF.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from analysis.summary import StageSummary
from loadtest.client.scrub import public_argv
from loadtest.rundir import Manifest
from reports.console import format_ms, format_number, format_target
from reports.html.answer import plan_line, verdict_lines
from reports.html.blocks import DASH as _DASH
from reports.html.blocks import escape as _e
from reports.html.blocks import table as _table
from reports.html.charts import (
    capacity_chart,
    cdf_chart,
    figure_html,
    timeline_chart,
    token_chart,
    tpot_fit_chart,
)
from reports.html.coldstart_section import cold_start_section
from reports.html.collect import RunView
from reports.html.compare import comparison_section
from reports.html.flow_section import flow_section
from reports.html.input_section import input_length_html
from reports.html.plan_section import plan_section
from reports.html.samples_section import samples_section
from reports.html.server_section import server_section
from reports.html.style import CSS

__all__ = ["render_page"]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return _DASH
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


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
    kind = ("classes", classes)
    if spec.python is not None:  # a Python scenario: its module and users; its declared steps carry no weight
        users = ", ".join(spec.python.users) or "every FlowUser it defines"
        steps = ", ".join(c.name for c in spec.request_classes) or "named by its calls"
        kind = ("flows", f"{spec.python.file_name} ({users}); steps: {steps}")
    versions = ", ".join(f"{k} {v}" for k, v in sorted(m.versions.items()))
    rows = [
        ("scenario", spec.scenario_source or "command-line flags"),
        ("endpoint", target),
        ("model", spec.endpoint.model),
        kind,
        ("stages", stages),
        ("seed", str(m.seed)),
        ("started", _when(m.created_at)),
        ("took", _duration(view.duration_s)),
        ("requests", f"{view.requests:,}"),
        ("host", _host(m)),
        ("versions", versions),
        (
            "command",
            " ".join(public_argv(m.command)),
        ),  # again: a manifest written before commands were cleaned
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<section class="card" id="{vid}-run"><h3>What was run</h3><dl>{items}</dl></section>'


def _host(m: Manifest) -> str:
    """The machine and the load processes: ``"Linux-…, 8 CPUs (4 usable); 3 load process(es) (--processes auto)"``;
    with ``--expect-workers``, the workers on other machines."""
    usable = m.host.usable_cpus
    cpus = f"{m.host.cpus or '?'} CPUs" + (f" ({usable} usable)" if usable not in (None, m.host.cpus) else "")
    dist = m.distribution
    if dist.expect_workers:
        load = f"a master for {dist.expect_workers} worker(s) on other machines"
    else:
        load = f"{dist.processes} load process(es)" + (" (--processes auto)" if dist.auto else "")
    return f"{m.host.platform}, {cpus}; {load}"


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
        "invalid in some stages — their numbers are not what was planned (below)"
        if view.validity.invalid
        else "doubtful — read the flagged items before acting on the numbers"
        if view.validity.doubtful
        else "valid: nothing found that distorts the measurement"
    )
    kind = "bad" if view.validity.invalid else "warn" if view.validity.doubtful else "good"
    gate = ""
    if view.validity.invalid:
        problems = "".join(f"<li>{_e(str(p))}</li>" for p in view.validity.problems)
        gate = (
            '<p class="gate-invalid">A CI gate (<code>loadtest gate</code>) would call the run invalid over these '
            f"stages — its numbers there are not what was planned:</p><ul>{problems}</ul>"
        )
    return (
        f'<section class="card validity {kind}" id="{vid}-validity"><h3>Validity</h3>'
        f"<p>{_e(summary)}</p><ul>{rows}</ul>{gate}</section>"
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
                format_ms(load.loop_delay_p99_s),
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
            "loop delay p99 (ms)",
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
        failure = view.manifest.failure
        if failure is not None:
            what = f"This run was <strong>stopped</strong>: {_e(failure.reason)}"
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
        f"{plan_section(view, vid)}"
        f'<section id="{vid}-latency"><h3>Latency</h3>{figure_html(charts[1])}{figure_html(charts[2])}</section>'
        f"{flow_section(view, vid)}"
        f'<section id="{vid}-time"><h3>Over time</h3>{figure_html(line)}</section>'
        f"{server_section(view, vid)}"
        f"{cold_start_section(view, vid)}"
        f'<section id="{vid}-token-lengths"><h3>Token lengths</h3>{figure_html(tokens)}'
        f"{input_length_html(view.input_lengths)}</section>"
        f"{_tables(view, vid)}{_errors(view, vid)}{samples_section(view, vid)}</article>"
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
