"""The report's charts: matplotlib figures rendered to inline SVG, byte-identical for the same input.

Each function returns a :class:`Chart` (title, a one-line caption saying how to read it, the SVG) or ``None``
when there is nothing to draw. Determinism: no date in the SVG metadata, text kept as text (``svg.fonttype:
none``), and each chart's own hash salt and root id (``svg.hashsalt``, ``svg.id``), so that ids are fixed and
never collide between the charts of one page. The :class:`~matplotlib.figure.Figure` is built without pyplot:
no global state, no GUI backend.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from analysis.capacity import CapacityResult
from analysis.coldstart import ColdStart
from analysis.forecast import Forecast
from analysis.plan import ArchitecturePlan
from analysis.timeline import Histogram, Timeline
from reports.html.blocks import escape

__all__ = [
    "SLO_COLOR",
    "Chart",
    "capacity_chart",
    "cdf_chart",
    "cold_start_chart",
    "cost_volume_chart",
    "figure_html",
    "figure_svg",
    "new_figure",
    "plan_chart",
    "server_chart",
    "timeline_chart",
    "token_chart",
    "tpot_fit_chart",
]

_RC: dict[Any, Any] = {
    "text.parse_math": False,  # a name with $…$ is text, not mathtext (and never an error)
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.titlesize": 9.0,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.4,
    "path.simplify": True,
}
_WIDTH_IN = 7.6
SLO_COLOR = "#b91c1c"
_ASKED: dict[str, Any] = {"color": "#222", "linestyle": "--"}


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # the chart's id on the page
    title: str
    caption: str
    svg: str


def figure_html(chart: Chart | None) -> str:
    """The chart as an HTML ``<figure>`` with its title and caption (escaped); empty for no chart."""
    if chart is None:
        return ""
    title, caption = escape(chart.title), escape(chart.caption)
    return (
        f'<figure id="{escape(chart.key)}" class="chart"><figcaption><strong>{title}</strong> — {caption}'
        f"</figcaption>{chart.svg}</figure>"
    )


@contextmanager
def new_figure(
    key: str, height_in: float, ncols: int = 1, nrows: int = 1
) -> Iterator[tuple[Figure, list[Axes]]]:
    rc: dict[Any, Any] = {**_RC, "svg.hashsalt": f"loadtest-{key}", "svg.id": "svg"}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(_WIDTH_IN, height_in), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
        yield fig, axes


def figure_svg(fig: Figure, key: str) -> str:
    """The figure as an inline ``<svg>``: no XML prolog or metadata, sized by the page (the viewBox kept), and every id
    prefixed with the chart's key — matplotlib numbers its groups ``axes_1``, ``patch_1``, … in every figure,
    which would repeat across the page's charts."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    svg = text[text.index("<svg") :]
    svg = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r"<svg\1", svg, count=1)
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)  # RDF boilerplate
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", svg)
    return re.sub(r'href="#([^"]+)"', rf'href="#{key}-\1"', svg)


def _ms(values: np.ndarray | float) -> np.ndarray | float:
    return np.asarray(values) * 1000.0 if isinstance(values, np.ndarray) else values * 1000.0


_METRIC_TITLES = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E"}


_DEFAULT_VIEWS = (("ttft", "p95"), ("tpot", "p50"), ("e2e", "p95"))


def _views(slos: Mapping[str, Mapping[str, float]]) -> list[tuple[str, str]]:
    """The percentile each panel shows: the first SLO's on that metric (``ttft_p99`` → TTFT p99), else the
    default; the curve has p50, p90, p95 and p99."""
    out = []
    for metric, default in _DEFAULT_VIEWS:
        given = [
            key.rpartition("_p")[2]
            for slo in slos.values()
            for key in slo
            if key.rpartition("_p")[0] == metric
        ]
        pct = next((f"p{q}" for q in given if q in ("50", "90", "95", "99")), default)
        out.append((metric, pct))
    return out


def capacity_chart(
    key: str,
    curves: Sequence[tuple[str, CapacityResult]],
    slos: Mapping[str, Mapping[str, float]],
) -> Chart | None:
    """Req/s on X*'s axis (``StagePoint.x_req_per_s``: an open-loop stage's target rate where its generator kept
    up, else what it achieved) against TTFT, TPOT and E2E per stage (one line per run; at the percentiles the SLOs
    name, else p95 / p50 / p95), with every class's SLO limit at that percentile and each run's SLO-compliant
    maximum X* and its 95 % interval. ``slos``: ``{class: {slo key: limit}}``."""
    if not any(p.req_per_s is not None for _, cap in curves for p in cap.points):
        return None
    with new_figure(key, 2.6, ncols=3) as (fig, axes):
        for ax, (metric, pct) in zip(axes, _views(slos), strict=True):
            for n, (name, cap) in enumerate(curves):
                pts = [(p.x_req_per_s, getattr(p, metric).get(pct)) for p in cap.points]
                xy = [(x, y) for x, y in pts if x is not None and y is not None]
                color = f"C{n}"
                if xy:
                    xs, ys = zip(*xy, strict=True)
                    label = name if metric == "ttft" else None
                    ax.plot(xs, _ms(np.asarray(ys)), marker="o", markersize=3.5, color=color, label=label)
                if cap.max_rps is not None:
                    ax.axvline(cap.max_rps, color=color, linewidth=0.9, alpha=0.8)
                    lo, hi = cap.max_rps_ci
                    if lo is not None and hi is not None:
                        ax.axvspan(lo, hi, color=color, alpha=0.12, linewidth=0)
            limits = [(cls, slo[f"{metric}_{pct}"]) for cls, slo in slos.items() if f"{metric}_{pct}" in slo]
            for m, (cls, limit) in enumerate(limits):
                style = ("--", ":", "-.")[m % 3]
                ax.axhline(limit * 1000.0, color=SLO_COLOR, linestyle=style, linewidth=1.0)
                ax.annotate(
                    f"SLO {cls}" if len(slos) > 1 else "SLO",
                    (1.0, limit * 1000.0),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    fontsize=6.5,
                    color=SLO_COLOR,
                )
            ax.set_xlabel("throughput (req/s)")
            ax.set_ylabel(f"{_METRIC_TITLES[metric]} {pct} (ms)")
            ax.set_ylim(bottom=0)
            ax.set_xlim(left=0)
        if any(ax.get_legend_handles_labels()[0] for ax in fig.axes):  # nothing succeeded: no curve to name
            fig.legend(loc="outside lower center", ncols=min(len(curves), 5), frameon=False)
        svg = figure_svg(fig, key)
    pooled = " Latency is over every class's requests; each class's SLO is drawn." if len(slos) > 1 else ""
    return Chart(
        key,
        "Capacity: throughput against latency",
        "Each point is a stage, at the throughput X* is read on (an open-loop stage whose generator kept up at its "
        "target rate, else what it achieved); a red line is an SLO, the vertical line the highest SLO-compliant "
        f"throughput X* and the shaded band its 95 % interval. Read where a curve crosses its SLO.{pooled}",
        svg,
    )


def cdf_chart(key: str, cdfs: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> Chart | None:
    """Latency distributions per stage: the share of successful requests at or below each latency."""
    if not any(cdfs.values()):
        return None
    stages = list(dict.fromkeys(stage for curves in cdfs.values() for stage in curves))
    colors = {stage: f"C{n % 10}" for n, stage in enumerate(stages)}  # one colour per stage in every panel
    with new_figure(key, 2.5, ncols=3) as (fig, axes):
        for ax, metric in zip(axes, ("ttft", "tpot", "e2e"), strict=True):
            for stage, (p, v) in cdfs.get(metric, {}).items():
                labelled = metric == "ttft" or stage not in cdfs.get("ttft", {})
                label = stage if labelled else None
                ax.plot(_ms(v), p, color=colors[stage], label=label, drawstyle="steps-post")
            ax.set_xlabel(f"{_METRIC_TITLES[metric]} (ms)")
            ax.set_ylabel("share of requests ≤ x")
            ax.set_ylim(0, 1.0)
            ax.set_xlim(left=0)
        fig.legend(loc="outside lower center", ncols=min(max(len(stages), 1), 6), frameon=False)
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "Latency distributions per stage",
        "Cumulative distribution of TTFT, TPOT and E2E over successful requests: a curve further right is slower; "
        "its height at x is the share of requests at or below x (0.95 is the p95).",
        svg,
    )


def timeline_chart(key: str, line: Timeline, windows: Sequence[tuple[str, float, float]]) -> Chart:
    """The run over time with its stage boundaries: req/s, output tok/s, in flight, errors, 429s."""
    panels = 5 if line.rate_limited_per_s else 4
    with new_figure(key, 1.35 * panels + 0.4, nrows=panels) as (fig, axes):
        axes[0].plot(line.t, line.completed_per_s, color="C0", drawstyle="steps-mid")
        axes[0].set_ylabel("completed\n(req/s)")
        axes[1].plot(line.t, line.output_tok_per_s, color="C1", drawstyle="steps-mid")
        axes[1].set_ylabel("output\n(tok/s)")
        axes[2].plot(line.t, line.in_flight, color="C2")
        axes[2].set_ylabel("in flight\n(requests)")
        for n, (name, series) in enumerate(sorted(line.errors_per_s.items())):
            axes[3].plot(line.t, series, color=f"C{(n + 3) % 10}", label=name)
        axes[3].set_ylabel("errors\n(per s)")
        if line.errors_per_s:
            axes[3].legend(loc="upper left", frameon=False, ncols=4)
        else:
            axes[3].text(0.5, 0.5, "no errors", transform=axes[3].transAxes, ha="center", va="center")
        if panels == 5:
            for n, (name, series) in enumerate(sorted(line.rate_limited_per_s.items())):
                axes[4].plot(line.t, series, color=f"C{(n + 6) % 10}", label=name)
            axes[4].set_ylabel("429s\n(per s)")
            axes[4].legend(loc="upper left", frameon=False, ncols=3)
        top = axes[0].get_ylim()[1]
        for ax in axes:
            ax.set_ylim(bottom=0)
            ax.set_xlim(0, line.t[-1] + line.bin_s / 2)
            for _, start, end in windows:
                ax.axvline(start, color="#555", linewidth=0.6, linestyle=":")
                ax.axvline(end, color="#555", linewidth=0.6, linestyle=":")
        for label, start, end in windows:
            axes[0].text((start + end) / 2, top, label, ha="center", va="bottom", fontsize=6.5, clip_on=False)
        axes[-1].set_xlabel(f"time since the first request (s); bins of {line.bin_s:g} s")
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "The run over time",
        "Per time bin: requests completed, output tokens, mean requests in flight, errors by class and 429s by "
        "limit type; dotted lines mark where each stage started and ended (its drain included). Bins are at least "
        "twice the median request, so a closed loop's waves of completions read as a rate.",
        svg,
    )


# the server gauges charted over time, in this order, with their axis labels and the scale shown
_SERVER_PANELS: tuple[tuple[str, str, float], ...] = (
    ("waiting", "waiting\n(requests)", 1.0),
    ("running", "running\n(requests)", 1.0),
    ("kv_cache_usage", "KV cache\n(% in use)", 100.0),
    ("gpu_usage_pct", "GPU\n(% busy)", 1.0),
    ("provisioned_concurrency", "provisioned\nconcurrency", 1.0),
)


def server_chart(
    key: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    start: float,
    windows: Sequence[tuple[str, float, float]],
    end: float | None = None,
) -> Chart | None:
    """The server's queue, running batch, KV-cache use (and Databricks' GPU use and provisioned concurrency) over
    time, on the run timeline's clock (seconds since ``start``, up to ``end``) with its stage boundaries."""
    panels = [(name, label, scale) for name, label, scale in _SERVER_PANELS if series.get(name)]
    if not panels:
        return None
    with new_figure(key, 1.2 * len(panels) + 0.4, nrows=len(panels)) as (fig, axes):
        for ax, (name, label, scale) in zip(axes, panels, strict=True):
            t = np.array([p[0] for p in series[name]]) - start
            v = np.array([p[1] for p in series[name]]) * scale
            ax.plot(t, v, color="C4", drawstyle="steps-post")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0, top=max(1.0, float(v.max()) * 1.1))
            ax.set_xlim(0, end)  # the run-over-time chart's axis: scrapes before the first request are off it
            for _, begin, end in windows:
                ax.axvline(begin, color="#555", linewidth=0.6, linestyle=":")
                ax.axvline(end, color="#555", linewidth=0.6, linestyle=":")
        axes[-1].set_xlabel("time since the first request (s)")
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "The server over time",
        "What the endpoint's own metrics said at each scrape (about once a second): requests queued and running, "
        "the share of its KV cache in use; dotted lines mark the stages as in the run-over-time chart.",
        svg,
    )


def token_chart(
    key: str, inputs: Histogram | None, outputs: Histogram | None, asked_input: str
) -> Chart | None:
    """Input and output token lengths, asked against served."""
    if inputs is None and outputs is None:
        return None
    with new_figure(key, 2.4, ncols=2) as (fig, axes):
        for ax, hist, what in ((axes[0], inputs, "input"), (axes[1], outputs, "output")):
            if hist is None:
                ax.text(0.5, 0.5, f"no {what} token counts", transform=ax.transAxes, ha="center")
                continue
            for name, style in (("served", {"color": "C0", "fill": True, "alpha": 0.5}), ("asked", _ASKED)):
                counts = hist.counts.get(name)
                if counts is not None and counts.sum():
                    ax.stairs(counts / counts.sum(), hist.edges, label=name, **style)
            ax.set_xlabel(f"{what} tokens per request")
            ax.set_ylabel("share of requests")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(loc="upper right", frameon=False)
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "Token lengths: asked against served",
        "Shares of requests per length. Input: the scenario's prompt-length distribution (drawn with the run's seed) "
        "against the prompt tokens the server counted; "
        f"output: max_tokens asked against output tokens served. Asked input: {asked_input}.",
        svg,
    )


def tpot_fit_chart(key: str, cap: CapacityResult) -> Chart | None:
    """Mean TPOT against mean requests in flight per stage, with the run's linear fit."""
    pts = [
        (p.concurrency, p.tpot_mean, p.stage)
        for p in cap.points
        if p.concurrency is not None and p.tpot_mean is not None
    ]
    if not pts:
        return None
    with new_figure(key, 2.6) as (fig, axes):
        ax = axes[0]
        xs = np.asarray([c for c, _, _ in pts])
        ax.scatter(xs, _ms(np.asarray([t for _, t, _ in pts])), color="C0", zorder=3, label="stages (mean)")
        for n, (c, t, stage) in enumerate(pts):  # labels above and below in turn, so close stages stay apart
            offset = (3, 4) if n % 2 == 0 else (3, -10)
            ax.annotate(stage, (c, t * 1000.0), fontsize=6.5, xytext=offset, textcoords="offset points")
        fit = cap.tpot_fit
        if fit is not None:
            grid = np.linspace(0, fit.x_max * 1.1, 50)
            r2 = f", R² {fit.r2:.3f}" if fit.r2 is not None else ""
            ax.plot(
                grid,
                _ms(fit.t0 + fit.t1 * grid),
                color="C1",
                label=f"fit: {fit.t0 * 1000:.2f} ms + {fit.t1 * 1000:.3f} ms × in flight{r2}",
            )
        ax.set_xlabel("mean requests in flight")
        ax.set_ylabel("mean TPOT (ms)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", frameon=False)
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "TPOT against requests in flight",
        "Continuous batching makes each decode step slower as the batch grows: TPOT ≈ t0 + t1·(in flight). "
        "The fit predicts latency at loads the run did not test (see loadtest analyze --predict).",
        svg,
    )


def plan_chart(key: str, rows: Sequence[ArchitecturePlan]) -> Chart | None:
    """Units to provision and monthly cost per architecture."""
    if not rows:
        return None
    with new_figure(key, 0.9 + 0.35 * max(len(rows), 2), ncols=2) as (fig, axes):
        y = np.arange(len(rows))
        units = [_units(r) for r in rows]
        axes[0].barh(y, [n for n, _ in units], color="C2")
        for i, (n, unit) in enumerate(units):
            axes[0].annotate(f" {n:,} {unit}", (n, i), va="center", fontsize=7)
        axes[0].set_yticks(y, [r.architecture for r in rows])
        axes[0].invert_yaxis()
        axes[0].set_xlabel("count to provision (each bar says its unit)")
        axes[0].margins(x=0.25)
        for offset, attr, color, label in (
            (-0.2, "pt_cost_per_month", "C0", "provisioned throughput"),
            (0.2, "ppt_cost_per_month", "C1", "pay-per-token"),
        ):
            costs = [getattr(r, attr) for r in rows]
            axes[1].barh(y + offset, [c or 0.0 for c in costs], height=0.4, color=color, label=label)
            for i, cost in enumerate(costs):
                if cost is None:
                    axes[1].annotate(" no price", (0, i + offset), va="center", fontsize=7)
        axes[1].set_yticks(y, [""] * len(rows))
        axes[1].invert_yaxis()
        axes[1].set_xlabel("cost per month (USD)")
        fig.legend(loc="outside lower center", ncols=2, frameon=False)
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "Provisioning per architecture",
        "What meets the SLOs at the forecast peak plus headroom — token-band chunks, model units or replicas, as "
        "each bar says — and what each option costs a month at the forecast volume (prices from the table named "
        "above; 'no price' where it has none).",
        svg,
    )


def _units(row: ArchitecturePlan) -> tuple[int, str]:
    """What a plan row provisions, with its unit: token-band chunks, model units, or (neither priced) replicas."""
    if row.model_units is not None:
        return row.model_units, "model units"
    if row.chunks is not None:
        return row.chunks, f"chunks of {row.chunk_size:,.0f} tok/s" if row.chunk_size else "chunks"
    return row.replicas, "replicas"


def _short(value: float) -> str:
    """A tick as people write it: 1k, 10M, 2.5B."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def cost_volume_chart(key: str, row: ArchitecturePlan, forecast: Forecast) -> Chart | None:
    """Monthly cost against monthly token volume: pay-per-token (linear) against provisioned (flat at the
    forecast's size), with the break-even volume marked."""
    per_token = row.ppt_usd_per_token
    if row.pt_cost_per_month is None or per_token is None or forecast.tokens_per_month <= 0:
        return None
    volume = forecast.tokens_per_month
    high = max(volume, row.break_even_tokens_per_month or 0.0) * 3.0
    grid = np.geomspace(high / 1000.0, high, 200)
    with new_figure(key, 2.6) as (fig, axes):
        ax = axes[0]
        ceiling = row.ppt_ceiling_tokens_per_month
        admitted = grid if ceiling is None else grid[grid <= ceiling]
        ax.plot(admitted, admitted * per_token, color="C1", label="pay-per-token")
        if ceiling is not None and ceiling < high:
            ax.axvline(ceiling, color="C1", linestyle="--", linewidth=0.9, label="most the quotas admit")
        ax.plot(
            grid,
            np.full_like(grid, row.pt_cost_per_month),
            color="C0",
            label="provisioned (autoscaled to the profile)"
            if row.pt_autoscaled
            else "provisioned (sized for the peak)",
        )
        ax.axvline(volume, color="#555", linestyle=":", linewidth=0.9, label="forecast volume")
        if row.break_even_tokens_per_month:
            be = row.break_even_tokens_per_month
            ax.plot([be], [be * per_token], marker="o", color="#b91c1c", zorder=3)
            ax.annotate(
                f"break-even {be / 1e9:,.2f} B tokens/month",
                (be, be * per_token),
                xytext=(6, -12),
                textcoords="offset points",
                fontsize=7,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain-text ticks: with text.parse_math off, log axes' default labels would show their mathtext source
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "$" + _short(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("tokens per month")
        ax.set_ylabel("cost per month (USD)")
        # headroom above the highest line, so the flat provisioned cost is not drawn on the frame
        top = max(row.pt_cost_per_month, float(admitted[-1] * per_token) if len(admitted) else 0.0)
        ax.set_ylim(top=top * 3.0)
        fig.legend(loc="outside lower center", ncols=4, frameon=False)
        svg = figure_svg(fig, key)
    return Chart(
        key,
        f"Cost against volume: {row.architecture}",
        "Pay-per-token grows with volume; provisioned throughput costs the same whatever flows through it. Left of "
        "the break-even, pay-per-token is cheaper, up to the most its quotas admit in a month (dashed).",
        svg,
    )


def cold_start_chart(key: str, cs: ColdStart) -> Chart:
    """A burst after idle from its first request: the throughput ramp with its plateau, and the errors, with the
    first token, the first success, 90 % of the plateau and the end of the errors marked."""
    t = (np.arange(len(cs.ramp)) + 0.5) * cs.bin_s
    with new_figure(key, 3.6, nrows=2) as (fig, axes):
        ramp, errs = axes
        ramp.plot(t, cs.ramp, color="C1", drawstyle="steps-mid", label=f"successful {cs.ramp_unit}")
        if cs.plateau:
            ramp.axhline(cs.plateau, color="#555", linewidth=0.8, linestyle="--", label="plateau")
            ramp.axhline(0.9 * cs.plateau, color="#555", linewidth=0.6, linestyle=":", label="90 % of it")
        ramp.set_ylabel(cs.ramp_unit)
        errs.plot(t, cs.errors_per_s, color="C3", drawstyle="steps-mid", label="failed req/s")
        errs.plot(t, cs.ok_per_s, color="C0", drawstyle="steps-mid", label="successful req/s")
        errs.set_ylabel("requests/s")
        marks = [
            ("first token", cs.first_token_s, "C2"),
            ("first success", cs.first_success_s, "C0"),
            ("90 % of plateau", cs.time_to_90pct_s, "C1"),
            ("errors ≤ 1 %", cs.errors_settled_s if cs.errors_settled else None, "C3"),
        ]
        for ax in axes:
            ax.set_ylim(bottom=0)
            ax.set_xlim(0, len(cs.ramp) * cs.bin_s)
            if cs.window_s is not None:
                ax.axvline(cs.window_s, color="#555", linewidth=0.6, linestyle=":")
            for label, at, color in marks:
                if at is not None:
                    ax.axvline(at, color=color, linewidth=0.9, alpha=0.8, label=label if ax is ramp else None)
        ramp.legend(loc="lower right", frameon=False, ncols=3)
        errs.legend(loc="upper right", frameon=False, ncols=2)
        errs.set_xlabel(f"seconds since the burst's first request; bins of {cs.bin_s:g} s")
        svg = figure_svg(fig, key)
    return Chart(
        key,
        f"Cold start: {cs.stage} after {cs.after}",
        "Per bin from the burst's first request: successful throughput (its plateau dashed, 90 % of it dotted) "
        "and requests failed and served per second; vertical lines mark the first token, the first success, "
        "90 % of the plateau and the end of the errors (the dotted grey one: the stage's window end).",
        svg,
    )
