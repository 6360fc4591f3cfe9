"""The comparison of several runs (endpoints, engines, releases, architectures): their capacity curves on one
chart, and one table of the key figures with each run's change against the first (the baseline) and which run is
best. A difference is called better or worse only when it is clear: for X*, when the 95 % intervals do not overlap;
for the other figures, when it exceeds :data:`CLEAR_CHANGE` (they have no interval here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reports.console import format_ms
from reports.html.blocks import escape
from reports.html.charts import capacity_chart, figure_html
from reports.html.collect import RunView
from reports.plan_table import format_money

__all__ = ["CLEAR_CHANGE", "Figure", "comparison_section", "key_figures"]

CLEAR_CHANGE = 0.05


@dataclass(frozen=True, slots=True)
class Figure:
    """One key figure across runs: values (None: not measured), how to show one, which way is better, and the
    95 % intervals when there are any."""

    name: str
    values: tuple[float | None, ...]
    show: Callable[[float], str]
    higher_is_better: bool
    intervals: tuple[tuple[float | None, float | None], ...] | None = None

    def verdict(self, i: int) -> str:
        """``better`` / ``worse`` / ``same`` (not clearly different) / ``""`` (no comparison) for run ``i``
        against the baseline (run 0)."""
        base, value = self.values[0], self.values[i]
        if base is None or value is None or i == 0:
            return ""
        if self.intervals is not None:
            (blo, bhi), (lo, hi) = self.intervals[0], self.intervals[i]
            if None not in (blo, bhi, lo, hi):
                assert blo is not None and bhi is not None and lo is not None and hi is not None
                if lo <= bhi and blo <= hi:
                    return "same"
                return "better" if (value > base) == self.higher_is_better else "worse"
        if base == 0:
            return "same" if value == 0 else ("better" if (value > 0) == self.higher_is_better else "worse")
        change = (value - base) / abs(base)
        if abs(change) <= CLEAR_CHANGE:
            return "same"
        return "better" if (change > 0) == self.higher_is_better else "worse"

    def best(self, names: Sequence[str]) -> str:
        """The run whose value is best, or "–" when fewer than two runs have one or the best is not clearly
        better than the baseline (or than the baseline's rivals: a tie)."""
        present = [(v, i) for i, v in enumerate(self.values) if v is not None]
        if len(present) < 2:
            return "–"
        top = max(present) if self.higher_is_better else min(present)
        ties = [i for v, i in present if v == top[0]]
        if len(ties) > 1:
            return "–"
        if top[1] == 0:  # the baseline: best only when every other run is clearly worse
            return names[0] if all(self.verdict(i) == "worse" for _, i in present if i != 0) else "–"
        return names[top[1]] if self.verdict(top[1]) == "better" else "–"


def _forecast(view: RunView) -> float | None:
    """The peak tokens/min a run's plan sized for (None: no plan)."""
    return None if isinstance(view.plan, str) else view.plan.forecast.peak_tokens_per_min


def _first_stage(view: RunView) -> str | None:
    return view.stages[0].stage if view.stages else None


def key_figures(views: Sequence[RunView]) -> list[Figure]:
    """The figures the comparison table shows, one value per run."""

    def stage_metric(metric: str, pct: str) -> tuple[float | None, ...]:
        # at the highest load every run shares by label, else each run's last stage
        shared = set.intersection(*({s.stage for s in v.stages} for v in views)) if views else set()
        out = []
        for v in views:
            stages = [s for s in v.stages if s.stage in shared] or list(v.stages)
            out.append(getattr(stages[-1], metric).get(pct) if stages else None)
        return tuple(out)

    def error_share(v: RunView) -> float | None:
        return sum(r.count for r in v.errors) / v.requests if v.requests else None

    def plan_cost(v: RunView) -> float | None:
        return None if isinstance(v.plan, str) else v.plan.rows[0].pt_cost_per_month

    ms = format_ms
    return [
        Figure(
            "max SLO-compliant req/s (X*)",
            tuple(v.capacity.max_rps for v in views),
            lambda x: f"{x:,.2f}",
            True,
            tuple(v.capacity.max_rps_ci for v in views),
        ),
        Figure(
            "output tok/s at X*",
            tuple(v.capacity.max_output_tok_per_s for v in views),
            lambda x: f"{x:,.0f}",
            True,
            tuple(v.capacity.max_output_tok_per_s_ci for v in views),
        ),
        Figure(
            "saturation req/s (max achieved)",
            tuple(v.capacity.saturation_rps for v in views),
            lambda x: f"{x:,.2f}",
            True,
        ),
        Figure("TTFT p95 at the highest shared stage (ms)", stage_metric("ttft", "p95"), ms, False),
        Figure("TPOT p50 at the highest shared stage (ms)", stage_metric("tpot", "p50"), ms, False),
        Figure("E2E p95 at the highest shared stage (ms)", stage_metric("e2e", "p95"), ms, False),
        Figure("error share", tuple(error_share(v) for v in views), lambda x: f"{x:.2%}", False),
        Figure(
            "provisioned $/month for the forecast", tuple(plan_cost(v) for v in views), format_money, False
        ),
    ]


def comparison_section(views: Sequence[RunView]) -> str:
    names = [v.name for v in views]
    e = escape
    figures = key_figures(views)
    head = "".join(f"<th>{e(n)}{' (baseline)' if i == 0 else ''}</th>" for i, n in enumerate(names))
    rows = []
    for fig in figures:
        cells = []
        for i, value in enumerate(fig.values):
            if value is None:
                cells.append('<td class="num">–</td>')
                continue
            text = fig.show(value)
            verdict = fig.verdict(i)
            base = fig.values[0]
            if i > 0 and base not in (None, 0):
                assert base is not None
                text += f" ({(value - base) / abs(base):+.1%})"
            klass = {"better": " better", "worse": " worse"}.get(verdict, "")
            label = {"same": " ≈", "better": " ▲", "worse": " ▼"}.get(verdict, "")
            cells.append(f'<td class="num{klass}">{e(text + label)}</td>')
        rows.append(f"<tr><td>{e(fig.name)}</td>{''.join(cells)}<td>{e(fig.best(names))}</td></tr>")
    table = (
        f'<div class="scroll"><table><thead><tr><th>figure</th>{head}<th>best</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    slos = next(
        (v.slos for v in views if v.slos), {}
    )  # the first run's that has any (differences are said above)
    chart = capacity_chart("compare-capacity", [(v.name, v.capacity) for v in views], slos)
    figure = figure_html(dataclasses.replace(chart, title=f"{chart.title}, all runs") if chart else None)
    stages = {v.name: _first_stage(v) for v in views}
    differ = [
        what
        for what, values in (
            ("SLOs", [dict(v.slos) for v in views]),
            ("forecasts", [_forecast(v) for v in views]),
        )
        if any(x != values[0] for x in values)
    ]
    differ_note = (
        f'<p class="note warn-note">The runs were judged against different {" and ".join(differ)}: their X* '
        "and plan figures answer different questions; compare them with the same --slo and --peak-tpm.</p>"
        if differ
        else ""
    )
    mismatch = len({tuple(s.stage for s in v.stages) for v in views}) > 1
    note = (
        '<p class="note">The runs ran different stages: per-stage figures compare each run at the highest stage '
        "they share, or at its own last stage when they share none.</p>"
        if mismatch and any(stages.values())
        else ""
    )
    return (
        '<section id="comparison"><h2>Comparison</h2>'
        f'<p class="note">Changes are against the first run. ▲ clearly better, ▼ clearly worse, ≈ not clearly '
        f"different (X*: the 95 % intervals overlap; other figures: within {CLEAR_CHANGE:.0%}).</p>"
        f"{differ_note}{table}{note}{figure}</section>"
    )
