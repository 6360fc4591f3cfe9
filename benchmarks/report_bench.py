"""How fast is the HTML report of a big run? (run by hand; results go in docs/performance.md)

    python benchmarks/report_bench.py [--records 1000000] [--dir /tmp/loadtest-report-bench] [--repeat 1]

Writes a synthetic run directory once — the records of ``analysis_bench.py`` (its writer, imported), with a
manifest completed as a real simulator run's would be: the simulator's settings, each class's prompt and output
length distributions, a ``[plan]`` forecast with two more architectures to estimate, the run's end and each stage
window's generator figures — then, in a fresh child process per repeat, times
:func:`reports.html.render_html` and reports the child's peak RSS (``VmHWM``,
:func:`loadtest.engine.procstat.peak_rss_mb`; interpreter and libraries included), the HTML's size and its
SHA-256 (to check that a change leaves the report's bytes alone).

The phases are timed from outside, by wrapping the functions :mod:`reports.html.collect` and
:mod:`reports.html.page` call (their module globals) for the one measured call: opening the run out of core and
its one pass over the stages for the summaries (per stage, per class over the run and per class per stage) and
capacity (:mod:`analysis.scan`), the load of the frame without chunk gaps for the rest, the generator check,
timeline, plan, samples, the small
validity and error steps, quantile curves, token histograms (with the asked-input draws), charts, and the page
(``render_page`` less its charts).

What the synthetic run lacks against a real one: no ``samples.jsonl`` (the report says the run stored none; a real
run's are a few kB per class), no ``events.jsonl``, ``engine.log`` or ``summary.json`` (the report reads the
manifest's windows), every output is 65 tokens (real runs vary; the output histogram is then one bin), all 429s
carry the same detail, error details are few and fixed, and the generator figures in the manifest are made up. The
simulator's settings only shape the plan: the records were not measured on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_driver import ensure_run, repeat_in_children  # noqa: E402

from loadtest.engine.procstat import peak_rss_mb  # noqa: E402
from loadtest.rundir import SimulatedEndpoint, read_manifest, write_manifest  # noqa: E402
from loadtest.spec.runspec import PlanRequest  # noqa: E402
from loadtest.spec.simulator import SimSettings  # noqa: E402

PROMPT_TOKENS = {"dist": "uniform", "min": 64, "max": 2047}  # what analysis_bench draws (integers(64, 2048))
OUTPUT_TOKENS = 65  # analysis_bench's max_tokens and output_tokens
PLAN = PlanRequest(peak_tokens_per_min=3_000_000.0, architectures=("llama-3.3-70b", "mixtral-8x7b"))

# phase → the functions it times (module globals of reports.html.collect), in the order collect_run calls them;
# a function may be called more than once per phase
_COLLECT_PHASES: dict[str, tuple[str, ...]] = {
    "open (out of core)": ("open_scan",),
    "summaries and capacity (out of core)": ("summarize_scan",),
    "load (without gaps)": ("load_run",),
    "generator check": ("check_load",),
    "timeline": ("timeline",),
    "plan": ("plan_for_run",),
    "samples": ("_samples",),
    "validity, errors": ("assess", "_errors"),
    "quantile curves": ("_cdfs",),
    "histograms": ("_asked_input", "_asked_output", "_tokens"),  # with the asked-input draws
}
_PAGE_CHARTS = ("capacity_chart", "cdf_chart", "timeline_chart", "token_chart", "tpot_fit_chart")
_PLAN_CHARTS = ("cost_volume_chart", "plan_chart")  # drawn by the plan section's module
_CHARTS = _PAGE_CHARTS + _PLAN_CHARTS


def complete_manifest(run_dir: Path, records: int) -> None:
    """Rewrite ``analysis_bench``'s manifest as a simulator run's: settings, length distributions, a plan, the
    run's end and each stage's generator figures (made up, plausible)."""
    m = read_manifest(run_dir)
    classes = tuple(
        dataclasses.replace(c, prompt_tokens=dict(PROMPT_TOKENS), output_tokens=OUTPUT_TOKENS)
        for c in m.spec.request_classes
    )
    spec = dataclasses.replace(m.spec, request_classes=classes, simulated=True, plan=PLAN)
    windows = m.stages or ()
    per_stage = records // max(len(windows), 1)
    stages = tuple(
        dataclasses.replace(
            w,
            cpu_start_s=10.0 * i,
            cpu_end_s=10.0 * i + 5.0,
            generator_cpu_share=0.05 + 0.05 * i,
            generator_rss_max_mb=70.0,
            records=per_stage,
            drained=True,
            dropped=0,
            no_free_user=0,
            inflight=0,
            workers=1,
        )
        for i, w in enumerate(windows)
    )
    last = stages[-1].end if stages else None
    write_manifest(
        run_dir,
        dataclasses.replace(
            m,
            spec=spec,
            simulator=SimulatedEndpoint(SimSettings(architecture="llama-3.1-8b", gpu="h100"), seed=0),
            created_at=(stages[0].start or 0.0) - 1.0 if stages else 0.0,
            finished_at=last,
            records=records,
            engine_exit_code=0,
            command=("report_bench",),
            stages=stages,
        ),
    )


class _Spent:
    """Seconds per wrapped function, summed over its calls, and the peak RSS (MB) when it last returned."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak_mb: dict[str, float] = {}

    def wrap(self, module: ModuleType, names: tuple[str, ...]) -> None:
        for name in names:
            setattr(module, name, self._timed(getattr(module, name), name))

    def _timed(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.peak_mb[name] = peak_rss_mb()

        return wrapper


def measure(run_dir: Path) -> dict[str, object]:
    """``render_html`` of ``run_dir`` in this process, its phases timed: seconds per phase, the peak RSS (MB) in
    all and when each collect phase ended (``VmHWM`` only grows: the phase where it jumps is where the peak is),
    the HTML's size (bytes) and SHA-256."""
    import reports.html as report
    import reports.html.collect as collect
    import reports.html.page as page
    import reports.html.plan_section as plan_section

    spent = _Spent()
    spent.wrap(collect, tuple(f for fns in _COLLECT_PHASES.values() for f in fns))
    spent.wrap(page, _PAGE_CHARTS)
    spent.wrap(plan_section, _PLAN_CHARTS)
    spent.wrap(report, ("collect_run", "render_page"))  # render_html calls them through its module's globals

    t0 = time.perf_counter()
    text = report.render_html([run_dir])
    total = time.perf_counter() - t0
    secs = spent.seconds
    out: dict[str, object] = {}
    for phase, fns in _COLLECT_PHASES.items():
        out[f"{phase} s"] = sum(secs[f] for f in fns)
    out["collect, rest s"] = secs["collect_run"] - sum(
        secs[f] for fns in _COLLECT_PHASES.values() for f in fns
    )
    charts = sum(secs[f] for f in _CHARTS)
    out["charts s"] = charts
    out["page s"] = secs["render_page"] - charts
    out["total s"] = total
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_mb after"] = {
        phase: max(spent.peak_mb.get(f, 0.0) for f in fns) for phase, fns in _COLLECT_PHASES.items()
    }
    data = text.encode()
    out["html_bytes"] = len(data)
    out["html_sha256"] = hashlib.sha256(data).hexdigest()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/loadtest-report-bench"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run_dir: Path = args.dir / f"run-{args.records}"
    if args.measure_only:
        print(json.dumps(measure(run_dir)))
        return

    def write(path: Path, records: int) -> None:
        # the synthetic run's writer; imported here only, so that the measured child loads nothing the report
        # does not (this directory is on sys.path when the file runs as a script)
        import analysis_bench

        analysis_bench.generate(path, records)
        complete_manifest(path, records)

    ensure_run(run_dir, args.records, write)
    repeat_in_children(
        __file__, ["--records", str(args.records), "--dir", str(args.dir), "--measure-only"], args.repeat
    )


if __name__ == "__main__":
    main()
