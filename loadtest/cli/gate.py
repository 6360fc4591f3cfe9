"""``loadtest gate RUN``: judge a finished run against thresholds and a baseline run — pass (0), fail (99) or
invalid (98) — and write the verdict as a table, JUnit XML, Markdown and JSON (:mod:`analysis.gate`,
:mod:`reports.gate_output`). ``loadtest run --gate`` calls :func:`judge` with the same options."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loadtest.cli.options import write_atomically
from loadtest.errors import ConfigError, GateFailed, RunInvalid

if TYPE_CHECKING:
    from analysis.frame import RunData
    from loadtest.spec.slo_flags import Regression, Threshold

__all__ = ["GateOptions", "Prepared", "gate", "gate_options", "judge", "prepare", "read_noise"]

NOISE_FILE = "noise.json"
NOISE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class GateOptions:
    slo: tuple[str, ...] = ()
    baseline: Path | None = None
    max_regression: tuple[str, ...] = ()
    noise_floor: tuple[str, ...] = ()
    noise: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    json_out: Path | None = None
    fmt: str = "table"

    @property
    def wanted(self) -> bool:
        """Anything that only a gate uses was given."""
        given = (self.baseline, self.max_regression, self.noise_floor, self.noise, self.junit, self.markdown)
        return any(given) or self.json_out is not None


def gate_options(slo: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The gate's options, shared by ``gate`` and ``run --gate`` (``run`` declares ``--slo`` itself)."""
    options = [
        click.option(
            "--baseline",
            type=click.Path(path_type=Path),
            help="A run directory to compare with, stage by stage (stages matched by label).",
        ),
        click.option(
            "--max-regression",
            multiple=True,
            metavar="[SCOPE:]METRIC:±N%",
            help="How much worse than the baseline a metric may get, e.g. 'tpot_p50:+10%', 'output_tok_per_s:-10%'"
            " (repeatable; default with --baseline: ttft_p95:+10%, tpot_p50:+10%, output_tok_per_s:-10%).",
        ),
        click.option(
            "--noise-floor",
            multiple=True,
            metavar="[METRIC:]N%",
            help="Run-to-run noise to allow for in comparisons, e.g. '3%' or 'ttft_p99:8%' (overrides a measured "
            "one; see loadtest noise).",
        ),
        click.option(
            "--noise",
            type=click.Path(path_type=Path),
            help=f"Noise floors measured by loadtest noise (default: BASELINE/{NOISE_FILE} when it exists).",
        ),
        click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML here."),
        click.option("--markdown", type=click.Path(path_type=Path), help="Write a Markdown summary here."),
        click.option(
            "--json", "json_out", type=click.Path(path_type=Path), help="Write the result as JSON here."
        ),
    ]
    if slo:
        options.insert(
            0,
            click.option(
                "--slo",
                multiple=True,
                metavar="[SCOPE:]METRIC<LIMIT",
                help="A threshold, e.g. 'ttft_p95<800ms', 'chat:tpot_p50<40ms', 'error_rate<1%', 'goodput>=95%', "
                "'output_tok_per_s>=1200' (repeatable; SCOPE a class or a stage; default: the scenario's SLOs).",
            ),
        )

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@gate_options()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    show_default=True,
    help="What to print on stdout.",
)
def gate(run_dir: Path, **opts: Any) -> None:
    """Judge RUN_DIR: pass (exit 0), fail (99), or invalid (98: its numbers cannot be trusted).

    Thresholds are checked in every stage (or the stage / class a SCOPE names); a comparison with --baseline
    fails a metric only when the 95 % interval of its change, widened by the noise floor, lies wholly beyond the
    limit. The Markdown summary is also appended to $GITHUB_STEP_SUMMARY when that is set. See docs/ci.md.
    """
    judge(run_dir, GateOptions(**opts))


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything about a gate that can be checked before there is a run to judge: the parsed flags, the
    baseline (read, with records), the noise floors and where they came from."""

    thresholds: tuple[Threshold, ...]
    regressions: tuple[Regression, ...]
    baseline: RunData | None
    noise: dict[str, float]
    noise_source: str | None


def prepare(opts: GateOptions, stages: list[str] | None = None) -> Prepared:
    """Check the gate's options (one line for a mistake, exit 2) and read the baseline and the noise floors;
    with ``stages`` (the labels of a run still to come), also that the baseline has the stages to compare."""
    from analysis import load_run
    from analysis.gate import missing_stages
    from loadtest.spec.slo_flags import parse_noise_floors, parse_regressions, parse_thresholds

    thresholds = tuple(parse_thresholds(opts.slo))
    regressions = tuple(parse_regressions(opts.max_regression))
    configured = parse_noise_floors(opts.noise_floor)
    if opts.baseline is None:
        for given, flag in (
            (regressions, "--max-regression"),
            (configured, "--noise-floor"),
            (opts.noise, "--noise"),
        ):
            if given:
                raise ConfigError(f"{flag} needs --baseline RUN (the run to compare with)")
        return Prepared(thresholds, regressions, None, {}, None)
    baseline = load_run(opts.baseline)
    if baseline.records.empty:
        raise ConfigError(f"--baseline {opts.baseline}: the run has no records to compare with")
    if stages is not None:
        missing = missing_stages(stages, baseline, regressions)
        if missing:
            raise ConfigError(_missing_stage(missing[0], opts.baseline, baseline))
    noise: dict[str, float] = {}
    source: list[str] = []
    noise_file = opts.noise or opts.baseline / NOISE_FILE
    if opts.noise is not None or noise_file.is_file():
        measured, runs = read_noise(noise_file)
        noise.update(measured)
        source.append(f"measured from {runs} A/A runs ({noise_file})")
    if configured:
        if "*" in configured:  # a floor for every metric replaces every measured one
            noise, source = {}, []
        noise.update(configured)
        source.append(
            "configured: "
            + ", ".join(f"{k if k != '*' else 'every metric'} {v:.1%}" for k, v in configured.items())
        )
    return Prepared(thresholds, regressions, baseline, noise, "; ".join(source) or None)


def _missing_stage(stage: str, path: Path, baseline: RunData) -> str:
    from analysis.gate import run_stages

    return (
        f"--baseline {path}: it has no stage {stage!r} (its stages: {', '.join(run_stages(baseline)) or 'none'}); "
        "stages are matched by label"
    )


def judge(run_dir: Path, opts: GateOptions, prepared: Prepared | None = None, run_slos: bool = False) -> None:
    """Gate ``run_dir`` and write every output asked for; raise :class:`GateFailed` (99) or :class:`RunInvalid`
    (98) unless it passes. Usage mistakes are found before anything is written. ``run_slos`` (``run --gate``):
    the run's class SLOs — the scenario's merged with the latency ``--slo`` flags, what its report judges — and
    its flow SLO are thresholds too, beside the gate-only ones (error rates, throughputs, flow metrics — an
    unscoped one replaces the flow SLO's own limit on the metric —, stage scopes)."""
    from analysis import load_run
    from analysis.gate import gate as judge_run
    from analysis.gate import run_stages, run_thresholds
    from analysis.validity import validity_of
    from loadtest.spec.slo_flags import gate_only
    from reports.gate_output import gate_json, gate_junit, gate_markdown, gate_table, printable

    prepared = prepared or prepare(opts)
    data = load_run(run_dir)
    if opts.baseline is not None and opts.baseline.resolve() == run_dir.resolve():
        raise ConfigError(f"--baseline {opts.baseline} is the run being gated: compare with an earlier run")
    thresholds = list(prepared.thresholds)
    if run_slos:
        labels = set(run_stages(data))
        only_gate = [t for t in thresholds if gate_only(t) or t.scope in labels]
        given = {t.metric for t in only_gate if t.flow and t.scope is None}
        own = [t for t in run_thresholds(data) if not (t.flow and t.metric in given)]
        thresholds = own + only_gate
    result = judge_run(
        data,
        validity_of(data),
        thresholds,
        baseline=prepared.baseline,
        baseline_validity=validity_of(prepared.baseline) if prepared.baseline is not None else None,
        regressions=prepared.regressions,
        noise=prepared.noise,
        noise_source=prepared.noise_source,
        names=(str(run_dir), str(opts.baseline) if opts.baseline is not None else None),
    )
    if opts.junit is not None:
        write_atomically(opts.junit, lambda tmp: tmp.write_bytes(gate_junit(result)))
    markdown = gate_markdown(result)
    if opts.markdown is not None:
        write_atomically(opts.markdown, lambda tmp: tmp.write_text(markdown))
    if opts.json_out is not None:
        write_atomically(opts.json_out, lambda tmp: tmp.write_bytes(gate_json(result)))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown + "\n")
        except OSError as exc:
            click.echo(f"note: cannot append to $GITHUB_STEP_SUMMARY ({summary}): {exc.strerror}", err=True)
    if opts.fmt == "json":
        click.echo(gate_json(result).decode(), nl=False)
    elif opts.fmt == "markdown":
        click.echo(markdown, nl=False)
    else:
        click.echo(gate_table(result), nl=False)
    if result.verdict == "invalid":
        reasons = printable("; ".join(result.reasons()))
        raise RunInvalid(f"gate: the run is invalid, neither a pass nor a fail: {reasons}")
    if result.verdict == "fail":
        names = [printable(c.name) for c in result.failed]
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise GateFailed("gate failed: " + ", ".join(names[:5]) + more)


def read_noise(path: Path) -> tuple[dict[str, float], int]:
    """``({metric: floor}, how many runs measured it)`` from a file ``loadtest noise`` wrote; one line if it is not
    one."""
    import orjson

    try:
        body = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read noise floors {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise ConfigError(f"{path} is not a noise-floor file (not JSON)") from None
    floors = body.get("floors") if isinstance(body, dict) else None
    runs = body.get("runs") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("format") != NOISE_FORMAT
        or not isinstance(floors, dict)
        or not isinstance(runs, list)
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < float("inf")
            for v in floors.values()
        )
    ):
        raise ConfigError(
            f"{path} is not a noise-floor file written by loadtest noise (format {NOISE_FORMAT})"
        )
    return {str(k): float(v) for k, v in floors.items()}, len(runs)
