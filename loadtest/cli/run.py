"""``loadtest run``: flags (and a scenario file) → a run against an endpoint or the embedded simulator → the
per-stage tables and a run directory. The run itself is :func:`loadtest.runner.launch.launch`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loadtest.cli.gate import GateOptions, gate_options, judge, prepare
from loadtest.cli.options import MAX_PEAK_RPS, MAX_PEAK_TPM, Bounded, Processes
from loadtest.cli.options import abort_after as _abort_after
from loadtest.cli.options import numbers as _numbers
from loadtest.cli.options import seconds as _seconds
from loadtest.cli.options import server_metrics as _server_metrics
from loadtest.errors import EXIT_INTERRUPTED, ConfigError, EndpointError, LoadtestError, RunInvalid
from loadtest.model.serving import DEFAULT_MAX_BATCH
from loadtest.rundir.manifest import SCENARIO_BROKEN, WORKER_LOST
from loadtest.spec.profile import SHAPES
from loadtest.spec.runspec import DEFAULT_MAX_CONCURRENCY, one_peak

if TYPE_CHECKING:
    from loadtest.spec.scenario import Scenario
    from loadtest.spec.simulator import SimSettings

__all__ = ["run"]


@click.command()
@click.argument("scenario", required=False, type=click.Path(path_type=Path))
@click.option(
    "--endpoint",
    metavar="URL",
    help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1). "
    "Omitted (and none in the scenario): an embedded simulator on a free 127.0.0.1 port.",
)
@click.option(
    "--model", metavar="NAME", help="Model name sent in each request (default: the first of /models)."
)
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the bearer token.")
@click.option(
    "--usage/--no-usage",
    "include_usage",
    default=None,
    help="Ask for a final usage chunk (stream_options.include_usage; default on).",
)
@click.option(
    "--concurrency",
    "-c",
    multiple=True,
    metavar="N[,N...]",
    help="Closed-loop stages of N users (default 1,4,16,64 on the simulator, 1 otherwise).",
)
@click.option(
    "--rate", "-r", multiple=True, metavar="RPS[,RPS...]", help="Open-loop stages at RPS requests/s."
)
@click.option(
    "--tokens-per-min",
    "-t",
    multiple=True,
    metavar="TPM[,TPM...]",
    help="Open-loop stages at a total token rate (input + output tokens per minute).",
)
@click.option(
    "--arrival",
    type=click.Choice(["constant", "poisson", "gamma"]),
    default=None,
    help="Arrival process of open-loop stages (default poisson).",
)
@click.option(
    "--burstiness",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Gamma arrivals: shape b, gap CV = 1/sqrt(b) (b<1 burstier than Poisson).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help=f"Open loop: most requests in flight at once (default {DEFAULT_MAX_CONCURRENCY}).",
)
@click.option(
    "--duration",
    "-d",
    metavar="DURATION",
    help="Length of each stage, e.g. 30s, 2m (default 8s on the simulator, 30s otherwise).",
)
@click.option("--max-requests", type=click.IntRange(min=1), help="Stop a stage after this many requests.")
@click.option(
    "--sweep",
    "sweep_points",
    type=click.IntRange(min=1),
    default=None,
    metavar="POINTS",
    help="Automatic sweep: 1-user baseline, saturation probe at --max-concurrency users, then POINTS "
    "open-loop rates between, stopping early when an SLO is clearly broken or the queue grows.",
)
@click.option(
    "--kind",
    type=click.Choice(["chat", "completions", "embeddings"]),
    default=None,
    help="Request kind (default chat).",
)
@click.option(
    "--prompt-tokens", type=click.IntRange(min=1), default=None, help="Prompt length (default 128)."
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=None, help="Output length asked for (default 128)."
)
@click.option(
    "--tokenizer",
    metavar="NAME_OR_PATH",
    default=None,
    help="Size prompts in this tokenizer's tokens: a tokenizer.json (or its folder), an installed package "
    "shipping one, or a model in the local Hugging Face cache; nothing is downloaded.",
)
@click.option(
    "--prompt-overhead",
    type=click.IntRange(min=0),
    default=None,
    metavar="TOKENS",
    help="Tokens the server's chat template adds to every chat prompt, when it reports no usage to measure "
    "them from; skips the preflight's calibration probes.",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=None,
    help="Calibrate prompt lengths from the server's usage counts in the preflight (default on).",
)
@click.option("--stream/--no-stream", default=None, help="Stream responses (default on).")
@click.option(
    "--ignore-eos/--no-ignore-eos",
    default=None,
    help="Send ignore_eos so output lengths are exact (vLLM, llama.cpp; default on).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Parent directory of run directories.",
)
@click.option("--name", default=None, help="Run name (default: the scenario's, 'sim' or 'endpoint').")
@click.option(
    "--seed", type=int, default=None, help="Seed for prompts, arrivals and the simulator (default 0)."
)
@click.option(
    "--drain-timeout", default=None, help="How long in-flight requests may finish after a stage (30s)."
)
@click.option(
    "--abort-after",
    default=None,
    metavar="DURATION|off",
    help="Stop the run (status failed, exit 3) when the endpoint is dead this long: every request failing to "
    "connect or getting no response, or every one answered with a 5xx (default 10s; 'off' keeps going).",
)
@click.option(
    "--server-metrics",
    default=None,
    metavar="URL|auto|off",
    help="Scrape the endpoint's Prometheus metrics (queue, batch, KV cache, preemptions, tokens) about once a "
    "second into server_metrics.jsonl: a URL, 'auto' (the endpoint's /metrics, or a Databricks endpoint's "
    "metrics export, when it answers) or 'off' (default: the scenario's [load] server_metrics, else auto).",
)
@click.option(
    "--read-timeout",
    default="120s",
    show_default=True,
    help="Longest silence on a stream before it counts as a timeout.",
)
@click.option(
    "--slo",
    "slo",
    multiple=True,
    metavar="[SCOPE:]METRIC<LIMIT",
    help="An SLO on every request class (or on a CLASS), e.g. --slo 'ttft_p95<1s' --slo 'tpot_p50<50ms' "
    "--slo 'goodput>=95%' (default on the simulator: the demo's ttft_p95<200ms, tpot_p50<50ms); with --gate also "
    "'error_rate<1%', 'output_tok_per_s>=1200' and a stage as SCOPE.",
)
@click.option(
    "--gate",
    "gate_run",
    is_flag=True,
    help="Gate the run when it ends, as loadtest gate does (exit 99 failed, 98 invalid): the --slo thresholds "
    "(or the scenario's SLOs) and --baseline.",
)
@gate_options(slo=False)
@click.option(
    "--peak-tpm",
    type=Bounded(0, MAX_PEAK_TPM),
    default=None,
    help="Forecast peak (total tokens/min) the report's plan sizes for (default on the simulator: an example).",
)
@click.option(
    "--peak-rps",
    type=Bounded(0, MAX_PEAK_RPS),
    default=None,
    help="Forecast peak as requests/s instead.",
)
@click.option(
    "--peak-fps",
    type=Bounded(0, MAX_PEAK_RPS),
    default=None,
    help="Forecast peak as flows/s instead (a Python scenario: converted with the run's measured requests and "
    "tokens per flow).",
)
@click.option(
    "--profile",
    type=click.Choice(SHAPES),
    default=None,
    help="The forecast's hourly shape for the report's plan (token bands autoscale hour by hour; see loadtest plan).",
)
@click.option(
    "--skip-preflight",
    is_flag=True,
    help="Do not send the preflight's probes before the run (prompts are then not calibrated).",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No live progress line and no notes while the run runs: warnings, errors and the results only.",
)
@click.option(
    "--processes",
    type=Processes(),
    default=1,
    show_default=True,
    help="Locust worker processes on this machine (a master coordinates them when > 1); 'auto': one per core to "
    "spare (the usable CPUs, less one for this process and one for an embedded simulator; at least 1).",
)
@click.option(
    "--expect-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Be a Locust master for N workers started elsewhere with 'loadtest worker'.",
)
@click.option(
    "--master-bind",
    default="127.0.0.1",
    show_default=True,
    help="Address the master listens on for workers (with --expect-workers).",
)
@click.option(
    "--master-port",
    type=click.IntRange(min=0, max=65535),
    default=0,
    help="Port the master listens on (default: a free port; set it with --expect-workers).",
)
@click.option("--architecture", default=None, help="Simulator: model architecture (default llama-3.1-8b).")
@click.option("--gpu", default=None, help="Simulator: GPU profile (default h100).")
@click.option("--replicas", type=click.IntRange(min=1), default=None, help="Simulator: replicas (default 1).")
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=None,
    help=f"Simulator: max sequences per replica (default {DEFAULT_MAX_BATCH}).",
)
def run(
    scenario: Path | None,
    gate_run: bool,
    baseline: Path | None,
    max_regression: tuple[str, ...],
    noise_floor: tuple[str, ...],
    noise: Path | None,
    junit: Path | None,
    markdown: Path | None,
    json_out: Path | None,
    **opts: Any,
) -> None:
    """Run a load test and print a per-stage summary.

    SCENARIO is a TOML file (see scenarios/) or a Python scenario (a module of flows, docs/scenarios-python.md);
    flags override it. With no endpoint anywhere, the run goes to the
    embedded simulator.
    """
    from analysis.flow_data import no_flows
    from analysis.gate_flows import not_a_stage
    from loadtest.rundir import SUMMARY_FILE
    from loadtest.runner.launch import launch
    from loadtest.runner.live import LiveLine
    from loadtest.runner.run import Distribution
    from loadtest.spec.assemble import Overrides, apply_overrides, python_from_flags, scenario_from_flags
    from loadtest.spec.processes import AUTO, auto_processes, usable_cpus
    from loadtest.spec.scenario import load_scenario
    from loadtest.spec.simulator import SimSettings
    from loadtest.spec.slo_flags import flow_slo_of, parse_slo_flags, parse_thresholds, slo_tables
    from reports import render_load_table, render_quota_note, render_stage_table, summary_json
    from scenarios import find_shipped

    gating = GateOptions(
        opts["slo"], baseline, max_regression, noise_floor, noise, junit, markdown, json_out, fmt="table"
    )
    if gating.wanted and not gate_run:
        raise ConfigError(
            "--baseline, --max-regression, --noise-floor, --noise, --junit, --markdown and --json need --gate"
        )
    thresholds = parse_thresholds(opts["slo"]) if gate_run else []
    if opts["api_key_env"] and not os.environ.get(opts["api_key_env"]):
        raise ConfigError(f"environment variable {opts['api_key_env']} is not set")
    sim_opts = SimSettings(**{k: opts[k] for k in ("architecture", "gpu", "replicas", "max_batch")})
    overrides = Overrides(
        endpoint=opts["endpoint"],
        model=opts["model"],
        api_key_env=opts["api_key_env"],
        include_usage=opts["include_usage"],
        concurrency=_numbers(opts["concurrency"], "--concurrency", int),
        rates=_numbers(opts["rate"], "--rate", float),
        tokens_per_min=_numbers(opts["tokens_per_min"], "--tokens-per-min", float),
        arrival=opts["arrival"],
        burstiness=opts["burstiness"],
        max_concurrency=opts["max_concurrency"],
        duration_s=_seconds(opts["duration"], "--duration"),
        max_requests=opts["max_requests"],
        drain_timeout_s=_seconds(opts["drain_timeout"], "--drain-timeout"),
        abort_after_s=_abort_after(opts["abort_after"], "--abort-after"),
        server_metrics=_server_metrics(opts["server_metrics"], "--server-metrics"),
        kind=opts["kind"],
        prompt_tokens=opts["prompt_tokens"],
        max_tokens=opts["max_tokens"],
        stream=opts["stream"],
        ignore_eos=opts["ignore_eos"],
        seed=opts["seed"],
        name=opts["name"],
        sweep_points=opts["sweep_points"],
        simulator=sim_opts,
        slos={} if gate_run else parse_slo_flags(opts["slo"]),
        flow_slo=flow_slo_of(parse_thresholds(opts["slo"])),
        peak_tokens_per_min=opts["peak_tpm"],
        peak_requests_per_s=opts["peak_rps"],
        peak_flows_per_s=opts["peak_fps"],
        profile=opts["profile"],
        tokenizer=opts["tokenizer"],
        prompt_overhead=opts["prompt_overhead"],
        calibrate=opts["calibrate"],
    )
    one_peak({f"--peak-{k}": opts[f"peak_{k}"] for k in ("tpm", "rps", "fps")}, "give the forecast peak as ")
    if opts["endpoint"] is not None and not opts["endpoint"].startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint must be an http(s) URL, got {opts['endpoint']!r}")
    if (
        scenario is not None
        and not scenario.exists()
        and (shipped := find_shipped(str(scenario))) is not None
    ):
        scenario = shipped  # a shipped scenario by name, e.g. `loadtest run chat` after pip install

    def assemble(overrides: Overrides) -> Scenario:
        if scenario is not None and scenario.suffix == ".py":
            return python_from_flags(scenario, overrides)
        if scenario is not None:
            return apply_overrides(load_scenario(scenario), overrides)
        return scenario_from_flags(overrides)

    chosen = assemble(overrides)
    prepared = None
    if gate_run:
        labels = [stage.label for stage in chosen.stages]
        classes = [c.name for c in chosen.classes]
        for t in thresholds:
            if t.flow and chosen.python is None:
                raise no_flows(f"--slo {t.text!r}")
            if t.flow and t.scope is not None and t.scope not in labels:
                raise not_a_stage(f"--slo {t.text!r}", t.scope, labels)
            if t.scope is not None and t.scope not in labels and t.scope not in classes:
                raise ConfigError(
                    f"--slo {t.text!r}: {t.scope!r} is neither a class ({', '.join(classes)}) nor a stage "
                    f"({', '.join(labels) or 'none: an automatic sweep chooses its stages as it runs'})"
                )
        # the latency and goodput thresholds are the classes' SLOs too (what the report judges); a stage's are
        # the gate's alone
        if thresholds:
            chosen = assemble(dataclasses.replace(overrides, slos=slo_tables(thresholds, skip_scopes=labels)))
        # every mistake in the gate's options (and a baseline without these stages) before the load, not after
        prepared = prepare(gating, labels if not chosen.sweep else None)
    read_timeout = _seconds(opts["read_timeout"], "--read-timeout") or 120.0
    if chosen.endpoint is None:
        _check_simulator(chosen.simulator)
    if opts["expect_workers"] and not opts["master_port"]:
        raise ConfigError("--expect-workers needs --master-port, so the workers know where to connect")
    processes, auto = opts["processes"], opts["processes"] == AUTO
    if auto:
        if opts["expect_workers"]:
            raise ConfigError(
                "--processes auto starts workers on this machine, --expect-workers waits for workers on others: "
                "give one of them"
            )
        processes = auto_processes(usable_cpus(), simulator=chosen.endpoint is None)
    distribution = Distribution(
        processes=processes,
        auto=auto,
        expect_workers=opts["expect_workers"] or 0,
        bind_host=opts["master_bind"],
        port=opts["master_port"],
    )
    result = launch(
        chosen,
        out=opts["out"],
        skip_preflight=opts["skip_preflight"],
        read_timeout_s=read_timeout,
        echo=_quiet_echo if opts["quiet"] else (lambda line: click.echo(line, err=True)),
        distribution=distribution,
        live=None if opts["quiet"] else LiveLine.for_stderr(),
        server_metrics=chosen.server_metrics,
    )
    outcome = result.outcome
    click.echo(render_stage_table(result.summaries))
    click.echo()
    click.echo(render_load_table(result.loads))
    quota = render_quota_note(result.summaries, result.loads)
    if quota:
        click.echo(quota)
    for load in result.loads:
        if not load.kept_up:
            click.echo(f"warning: {load.stage}: the generator did not keep up: {load.reason}", err=True)
        elif load.capped:
            click.echo(f"note: {load.stage}: did not offer its target load: {load.reason}", err=True)
    click.echo(f"records: {outcome.records} in {outcome.run_dir}/records.jsonl ({outcome.status})")
    (outcome.run_dir / SUMMARY_FILE).write_bytes(summary_json(result.summaries))
    _report(outcome.run_dir)
    if outcome.status == "interrupted":
        raise SystemExit(EXIT_INTERRUPTED)
    stopped: LoadtestError | None = None
    if (
        outcome.failure is not None
    ):  # one line; exit 3 for a dead endpoint, 1 for a lost worker, 2 for a scenario's user (also with --gate)
        line = f"{outcome.failure.reason}: stopped; {outcome.records:,} records kept in {outcome.run_dir}"
        if outcome.failure.kind == SCENARIO_BROKEN:
            stopped = ConfigError(line)
        else:
            stopped = LoadtestError(line) if outcome.failure.kind == WORKER_LOST else EndpointError(line)
    if gate_run:  # a failed engine's run is judged too: invalid (98), with the outputs CI keeps
        click.echo()
        try:
            judge(outcome.run_dir, gating, prepared, run_slos=True)
        except RunInvalid:
            if stopped is None:
                raise
    if stopped is not None:
        raise stopped
    if outcome.status == "failed":
        raise LoadtestError(
            f"the load engine failed (exit {outcome.engine_exit_code}); see {outcome.run_dir}/engine.log"
        )
    if outcome.records and not any(s.ok for s in result.summaries):
        raise EndpointError(
            f"no request succeeded ({outcome.records} failed), most often: {result.most_common_error}"
        )


def _report(run_dir: Path) -> None:
    """Write the run's ``report.html`` (also for an interrupted or failed run: it says so), then print the answer
    — the verdict, the plan — and the report's path. The records are already safe on disk: a report that cannot
    be made is a warning with the command that rebuilds it, not a failed run."""
    from loadtest.cli.report import write_report
    from loadtest.rundir import REPORT_FILE
    from reports.html import answer_lines, collect_run

    path = run_dir / REPORT_FILE
    try:
        view = collect_run(run_dir)
        write_report([view], path)
    except Exception as exc:  # the run is done and recorded: say what failed and go on
        if os.environ.get("LOADTEST_DEBUG"):
            raise
        click.echo(
            f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
            f"rebuild it with: loadtest report {run_dir}",
            err=True,
        )
        return
    click.echo()
    for line in answer_lines(view):
        click.echo(line)
    click.echo(f"report: {path}")


def _check_simulator(settings: SimSettings) -> None:
    """The simulator's architecture and GPU names, checked before anything starts (as the flags name them)."""
    from loadtest.model.catalog import check_architecture, check_gpu
    from loadtest.spec.simulator import flag_of

    if settings.architecture is not None:
        check_architecture(settings.architecture, flag_of("architecture"))
    if settings.gpu is not None:
        check_gpu(settings.gpu, flag_of("gpu"))


def _quiet_echo(line: str) -> None:
    """``--quiet``: the run's notes are dropped, its warnings still said."""
    if line.startswith("warning:"):
        click.echo(line, err=True)
