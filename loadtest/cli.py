"""The ``loadtest`` command. Thin: parses options, calls the library, maps errors to one line and an exit code.

Heavy imports (pandas, httpx) happen inside commands so ``loadtest --help`` is fast; locust/gevent are never
imported here (the engine runs in a child process).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from loadtest import __version__
from loadtest.errors import ConfigError, EndpointError, LoadtestError

__all__ = ["cli", "main"]

SIM_DEFAULT_STAGES = (1, 4, 16)


def _fail_usage(message: str) -> None:
    raise click.UsageError(message)


def _parse_concurrency(values: tuple[str, ...]) -> tuple[int, ...]:
    found: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise ConfigError(f"--concurrency takes positive integers, got {part!r}")
            found.append(int(part))
    return tuple(found)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="loadtest")
def cli() -> None:
    """Load testing and capacity planning for LLM serving endpoints."""


@cli.command()
@click.option(
    "--endpoint",
    metavar="URL",
    help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1). "
    "Omitted: an embedded simulator is started on a free 127.0.0.1 port.",
)
@click.option(
    "--model", metavar="NAME", help="Model name sent in each request (default: the first of /models)."
)
@click.option(
    "--concurrency",
    "-c",
    multiple=True,
    metavar="N[,N...]",
    help="Closed-loop users per stage; repeat or comma-separate for a sweep (default 1,4,16 on the "
    "simulator, 1 otherwise).",
)
@click.option(
    "--duration",
    "-d",
    metavar="DURATION",
    help="Length of each stage, e.g. 30s, 2m (default 8s on the simulator, 30s otherwise).",
)
@click.option("--max-requests", type=click.IntRange(min=1), help="Stop a stage after this many requests.")
@click.option(
    "--kind",
    type=click.Choice(["chat", "completions", "embeddings"]),
    default="chat",
    show_default=True,
    help="Request kind.",
)
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--stream/--no-stream", default=True, show_default=True)
@click.option(
    "--usage/--no-usage",
    "include_usage",
    default=True,
    show_default=True,
    help="Ask for a final usage chunk (stream_options.include_usage).",
)
@click.option(
    "--ignore-eos/--no-ignore-eos",
    default=True,
    show_default=True,
    help="Send ignore_eos so output lengths are exact (vLLM, llama.cpp).",
)
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the bearer token.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Parent directory of run directories.",
)
@click.option("--name", default=None, help="Run name (default: 'sim' or 'endpoint').")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for prompts and the simulator.")
@click.option(
    "--drain-timeout",
    "drain_timeout",
    default="30s",
    show_default=True,
    help="How long in-flight requests may finish after a stage.",
)
@click.option(
    "--read-timeout",
    "read_timeout",
    default="120s",
    show_default=True,
    help="Longest silence on a stream before it counts as a timeout.",
)
@click.option("--skip-preflight", is_flag=True, help="Do not send the one-request probe before the run.")
@click.option(
    "--architecture", default="llama-3.1-8b", show_default=True, help="Simulator: model architecture."
)
@click.option("--gpu", default="h100", show_default=True, help="Simulator: GPU profile.")
@click.option(
    "--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Simulator: replicas."
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Simulator: max sequences per replica.",
)
def run(**opts: Any) -> None:
    """Run a load test and print a per-stage summary. With no --endpoint, against the embedded simulator."""
    from loadtest.runspec import parse_duration

    try:
        drain = parse_duration(opts["drain_timeout"])
        read_timeout = parse_duration(opts["read_timeout"])
        duration = parse_duration(opts["duration"]) if opts["duration"] else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    concurrency = _parse_concurrency(opts["concurrency"])
    simulated = not opts["endpoint"]
    if opts["api_key_env"] and not os.environ.get(opts["api_key_env"]):
        raise ConfigError(f"environment variable {opts['api_key_env']} is not set")
    if simulated:
        _run_with_simulator(opts, concurrency or SIM_DEFAULT_STAGES, duration or 8.0, drain, read_timeout)
    else:
        _run_against(opts, opts["endpoint"], concurrency or (1,), duration or 30.0, drain, read_timeout, None)


def _run_with_simulator(
    opts: dict[str, Any], concurrency: tuple[int, ...], duration: float, drain: float, read_timeout: float
) -> None:
    from loadtest.probe import first_model_id
    from loadtest.simproc import SimulatorProcess

    sim_args = [
        "--architecture",
        opts["architecture"],
        "--gpu",
        opts["gpu"],
        "--replicas",
        str(opts["replicas"]),
        "--max-batch",
        str(opts["max_batch"]),
        "--seed",
        str(opts["seed"]),
    ]
    with SimulatorProcess(sim_args) as sim:
        base = sim.url + "/v1"
        click.echo(
            f"embedded simulator: {opts['architecture']} on {opts['gpu']} × {opts['replicas']} at {base}",
            err=True,
        )
        model = opts["model"] or first_model_id(base, {}) or opts["architecture"]
        target = {
            "simulator": {
                "architecture": opts["architecture"],
                "gpu": opts["gpu"],
                "replicas": opts["replicas"],
                "max_batch": opts["max_batch"],
                "seed": opts["seed"],
            }
        }
        _run_against(
            {**opts, "model": model, "skip_preflight": True, "name": opts["name"] or "sim"},
            base,
            concurrency,
            duration,
            drain,
            read_timeout,
            target,
        )


def _run_against(
    opts: dict[str, Any],
    base_url: str,
    concurrency: tuple[int, ...],
    duration: float,
    drain: float,
    read_timeout: float,
    target: dict[str, Any] | None,
) -> None:
    from analysis import load_run, summarize_stages
    from loadtest.probe import first_model_id, preflight
    from loadtest.protocol import EndpointSpec, RequestClass, public_url
    from loadtest.run import execute_run, new_run_dir
    from loadtest.runspec import RunSpec, Stage
    from reports import render_stage_table

    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint must be an http(s) URL, got {base_url!r}")
    key_env = opts["api_key_env"]
    headers = {"Authorization": f"Bearer {os.environ[key_env]}"} if key_env else {}
    model = opts["model"] or first_model_id(base_url, headers)
    if not model:
        raise ConfigError(f"--model is required: {public_url(base_url)}/models lists no model")
    endpoint = EndpointSpec(
        base_url=base_url,
        model=model,
        api_key_env=key_env,
        include_usage=opts["include_usage"],
        name=opts["name"] or model,
    )
    cls = RequestClass(
        name=opts["kind"],
        kind=opts["kind"],
        prompt_tokens=opts["prompt_tokens"],
        output_tokens=opts["max_tokens"],
        stream=opts["stream"] and opts["kind"] != "embeddings",
        ignore_eos=opts["ignore_eos"],
    )
    if not opts["skip_preflight"]:
        preflight(endpoint, cls, headers, timeout_s=read_timeout)
    stages = tuple(
        Stage(kind="concurrency", users=n, duration_s=duration, max_requests=opts["max_requests"])
        for n in concurrency
    )
    name = opts["name"] or "endpoint"
    run_dir = new_run_dir(opts["out"], name)
    spec = RunSpec(
        run_id=uuid.uuid4().hex[:12],
        name=name,
        out_dir=str(run_dir),
        endpoint=endpoint,
        request_classes=(cls,),
        stages=stages,
        seed=opts["seed"],
        drain_timeout_s=drain,
        read_timeout_s=read_timeout,
        simulated=target is not None,
    )
    total = sum(s.duration_s for s in stages)
    click.echo(
        f"run {run_dir}: {len(stages)} stage(s), {total:.0f}s of load against {public_url(base_url)} "
        f"model {model}",
        err=True,
    )

    def progress(event: dict[str, Any]) -> None:
        if event.get("event") == "stage_end":
            click.echo(f"  {event['stage']}: {event.get('records', 0)} requests", err=True)

    outcome = execute_run(spec, run_dir, target=target, progress=progress)
    data = load_run(run_dir)
    order = [s.label for s in stages]
    summaries = summarize_stages(data.records, order)
    _write_summary(run_dir, summaries)
    click.echo(render_stage_table(summaries))
    click.echo(f"records: {outcome.records} in {run_dir}/records.jsonl ({outcome.status})")
    if outcome.status == "interrupted":
        raise SystemExit(130)
    if outcome.status == "failed":
        raise LoadtestError(
            f"the load engine failed (exit {outcome.engine_exit_code}); see {run_dir}/engine.log"
        )
    if outcome.records and not any(s.ok for s in summaries):
        worst = data.records["error_detail"].dropna()
        detail = worst.mode().iloc[0] if not worst.empty else "unknown error"
        raise EndpointError(f"no request succeeded ({outcome.records} failed), most often: {detail}")


def _write_summary(run_dir: Path, summaries: list[Any]) -> None:
    import orjson

    payload = {"stages": [s.to_dict() for s in summaries]}
    (run_dir / "summary.json").write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def analyze(run_dir: Path, fmt: str) -> None:
    """Summarise a run directory (per stage)."""
    import orjson

    from analysis import load_run, summarize_stages
    from reports import render_stage_table

    data = load_run(run_dir)
    order = [s.get("label", "") for s in data.manifest.get("spec", {}).get("stages", [])]
    summaries = summarize_stages(data.records, order)
    if fmt == "json":
        click.echo(
            orjson.dumps(
                {
                    "run_id": data.manifest.get("run_id"),
                    "status": data.manifest.get("status"),
                    "stages": [s.to_dict() for s in summaries],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    click.echo(render_stage_table(summaries))
    if data.skipped_lines:
        click.echo(f"note: {data.skipped_lines} unreadable record line(s) skipped", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8000,
    show_default=True,
    help="Port (0: any free port).",
)
@click.option("--architecture", default="llama-3.1-8b", show_default=True)
@click.option("--gpu", default="h100", show_default=True)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--api-token-env", metavar="VAR", help="Require 'Authorization: Bearer $VAR' (401 otherwise).")
def sim(
    host: str,
    port: int,
    architecture: str,
    gpu: str,
    replicas: int,
    max_batch: int,
    seed: int,
    api_token_env: str | None,
) -> None:
    """Serve the simulated OpenAI/Databricks endpoint until Ctrl-C."""
    from loadtest.perfmodel import ARCHITECTURES, GPUS
    from loadtest.sim.server import SimConfig, run_sim_foreground

    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if gpu not in GPUS:
        raise ConfigError(f"unknown GPU {gpu!r}; known: {', '.join(sorted(GPUS))}")
    token = None
    if api_token_env:
        token = os.environ.get(api_token_env)
        if not token:
            raise ConfigError(f"environment variable {api_token_env} is not set")
    config = SimConfig(
        host=host,
        port=port,
        architecture=architecture,
        gpu=gpu,
        replicas=replicas,
        max_batch=max_batch,
        seed=seed,
        api_token=token,
    )
    run_sim_foreground(config, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and an exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="loadtest", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see 'loadtest {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent else ""
        click.echo(f"loadtest: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"loadtest: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("loadtest: interrupted", err=True)
        return 130
    except LoadtestError as exc:
        click.echo(f"loadtest: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("loadtest: interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # the last line of defence: still one line, no traceback
        if os.environ.get("LOADTEST_DEBUG"):
            raise
        click.echo(
            f"loadtest: internal error: {type(exc).__name__}: {exc} (LOADTEST_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 1
    return 0
