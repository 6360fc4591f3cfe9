"""``loadtest plan``: provisioning recommendations per architecture (see :mod:`analysis.plan`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loadtest.cli.options import MAX_PEAK_RPS, MAX_PEAK_TPM, Bounded
from loadtest.cli.options import seconds as _seconds
from loadtest.errors import ConfigError, Infeasible

if TYPE_CHECKING:
    from analysis.cost_basis import WorkspaceFacts
    from analysis.frame import RunData
    from analysis.plan import PlanSlos
    from loadtest.spec.profile import LoadProfile

__all__ = ["plan"]


@click.command()
@click.option(
    "--peak-tpm",
    type=Bounded(0, MAX_PEAK_TPM),
    default=None,
    help="Forecast peak: total (input + output) tokens per minute.",
)
@click.option(
    "--peak-rps",
    type=Bounded(0, MAX_PEAK_RPS),
    default=None,
    help="Forecast peak as requests/s instead (tokens/min = req/s × (input + output) × 60).",
)
@click.option(
    "--peak-fps",
    type=Bounded(0, MAX_PEAK_RPS),
    default=None,
    help="Forecast peak as flows/s of a Python scenario instead: converted with the requests and tokens per ok "
    "flow measured in --mix-from RUN, else the first --run.",
)
@click.option(
    "--prompt-tokens", type=click.IntRange(min=1), default=None, help="Mean input tokens per request."
)
@click.option(
    "--output-tokens",
    type=click.IntRange(min=0),
    default=None,
    help="Mean output tokens per request (0: embeddings, which only read).",
)
@click.option(
    "--mix-from",
    type=click.Path(path_type=Path),
    default=None,
    help="Take the mean input/output tokens from a run directory instead.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="max_tokens requests reserve against OTPM (default: the output length).",
)
@click.option(
    "--monthly-tokens",
    type=Bounded(0, 1e15, low_open=False),
    default=None,
    help="Monthly token volume (default: peak × minutes in a month × --load-factor).",
)
@click.option(
    "--load-factor",
    type=Bounded(0, 1),
    default=0.35,
    show_default=True,
    help="Average load as a share of peak, for the monthly volume.",
)
@click.option("--ttft", default=None, help="SLO on TTFT, e.g. 1s (checked on the model's mean).")
@click.option("--tpot", default=None, help="SLO on TPOT, e.g. 50ms (checked on the model's mean).")
@click.option(
    "--headroom",
    type=Bounded(0, 10, low_open=False),
    default=0.2,
    show_default=True,
    help="Capacity above the peak to provision, as a fraction.",
)
@click.option(
    "--arch",
    "architectures",
    multiple=True,
    help="Candidate architecture (repeatable; default: every generative model in the catalog, or every "
    "embedding model with --output-tokens 0).",
)
@click.option("--gpu", default="h100", show_default=True, help="GPU every candidate runs on (h100, a100).")
@click.option(
    "--dtype",
    type=click.Choice(["fp16", "fp8"]),
    default=None,
    help="Weights and KV cache in this precision (default: each model's native one).",
)
@click.option(
    "--tp",
    type=click.Choice(["1", "2", "4", "8", "16"]),
    default=None,
    help="Tensor-parallel GPUs per replica (default: the fewest the weights fit on, per model).",
)
@click.option(
    "--profile",
    default=None,
    help="Hourly load: flat, business-hours, diurnal (scaled to the peak), or a CSV with a 'tokens' or "
    "'requests' column per hour (its busiest hour is the peak unless --peak-* is given).",
)
@click.option(
    "--max-refused",
    type=Bounded(0, 1, low_open=False),
    default=0.01,
    show_default=True,
    help="Pay-per-token fits while at most this share of the peak's requests get HTTP 429.",
)
@click.option(
    "--prices",
    type=click.Path(path_type=Path),
    default=None,
    help="Price and quota table (TOML); default: the shipped EXAMPLE table.",
)
@click.option(
    "--run",
    "run_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    help="A measured run (repeatable, one per architecture): its SLO-compliant capacity replaces the model's "
    "estimate for its architecture; the first one's mix is the forecast's unless given.",
)
@click.option(
    "--run-arch",
    default=None,
    help="Architecture the --run endpoint served (simulator runs know it; with one --run).",
)
@click.option(
    "--run-band",
    type=Bounded(0, MAX_PEAK_TPM),
    default=None,
    help="Provisioned tokens/s (max of the band) of the --run endpoint (simulator runs know it; with one --run).",
)
@click.option(
    "--endpoint",
    default=None,
    metavar="NAME",
    help="A Databricks serving endpoint: read its served model, configured band and the workspace's "
    "throughput_chunk_size (credentials: the Databricks SDK's chain; docs/databricks-auth.md) and plan it.",
)
@click.option(
    "--registered-model",
    default=None,
    metavar="NAME",
    help="A registered model with no endpoint yet, e.g. system.ai.meta_llama_v3_3_70b_instruct (with "
    "--model-version): read the workspace's throughput_chunk_size for it and plan it.",
)
@click.option(
    "--model-version",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --registered-model: its version (the optimization info is per version).",
)
@click.option(
    "--host",
    default=None,
    help="With --endpoint or --registered-model: the workspace URL (default: DATABRICKS_HOST or the profile's "
    "host).",
)
@click.option(
    "--hourly",
    is_flag=True,
    help="With --profile, also print each hour: its load, the chunks each band needs, the share PPT admits.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def plan(**opts: Any) -> None:
    """Recommend provisioned throughput (chunks / band or model units) or pay-per-token per architecture, and the
    monthly cost of each, for a forecast peak and SLOs."""

    from analysis.flow_peak import flow_peak
    from analysis.forecast import MINUTES_PER_MONTH, Forecast
    from analysis.measured import mean_mix, measured_from_run
    from analysis.plan import PlanSlos
    from analysis.plan import plan as make_plan
    from analysis.prices import load_prices
    from analysis.run_plan import EXAMPLE_PRICES
    from loadtest.model.catalog import check_gpu
    from loadtest.model.quota import WORKSPACE_QPS_LIMIT
    from loadtest.spec.runspec import one_peak
    from reports.plan_table import PlanContext, render_hourly, render_plan_json, render_plan_table

    gpu = check_gpu(opts["gpu"].lower(), "--gpu")
    tp = int(opts["tp"] or 0)
    opts["load_factor_given"] = click.get_current_context().get_parameter_source("load_factor") not in (
        click.core.ParameterSource.DEFAULT,
        None,
    )
    prompt, output = opts["prompt_tokens"], opts["output_tokens"]
    runs = [_load_run(path) for path in opts["run_dirs"]]
    if len(runs) > 1 and (opts["run_arch"] or opts["run_band"]):
        raise ConfigError("--run-arch and --run-band describe one run: give a single --run with them")
    for run in runs:
        _check_simulator_run(run, opts["run_arch"], opts["run_band"])
    measured = {}
    for run in runs:
        arch, measured_run = measured_from_run(run, opts["run_arch"], opts["run_band"])
        if arch in measured:
            raise ConfigError(f"two runs measured {arch}: give one run per architecture")
        measured[arch] = measured_run
    mix_from = _load_run(opts["mix_from"]) if opts["mix_from"] is not None else (runs[0] if runs else None)
    if mix_from is not None and (prompt is None or output is None):
        run_prompt, run_output = mean_mix(mix_from)
        prompt = prompt if prompt is not None else round(run_prompt)
        output = output if output is not None else round(run_output)
    if prompt is None or output is None:
        raise ConfigError("give --prompt-tokens and --output-tokens, or --mix-from RUN")
    one_peak(
        {f"--peak-{k}": opts[f"peak_{k}"] for k in ("tpm", "rps", "fps")}, "give the forecast peak once: "
    )
    flows = None
    if opts["peak_fps"] is not None:
        if mix_from is None:
            raise ConfigError(
                "--peak-fps is converted with a run's measured flows: give --run or --mix-from (a run of a "
                "Python scenario)"
            )
        flows = flow_peak(mix_from.run_dir, opts["peak_fps"], mix_from.manifest)
        opts["peak_tpm"] = flows.tokens_per_min
    profile = _profile(opts["profile"])
    if opts["hourly"] and profile is None:
        raise ConfigError("--hourly shows the hours of a --profile: give one")
    if profile is not None and (opts["monthly_tokens"] is not None or opts["load_factor_given"]):
        raise ConfigError("--profile sets the monthly volume: drop --monthly-tokens / --load-factor")
    if opts["monthly_tokens"] is not None and opts["load_factor_given"]:
        raise ConfigError(
            "--monthly-tokens sets the monthly volume: drop --load-factor (it derives one from the peak)"
        )
    if opts["hourly"] and opts["fmt"] == "json":
        raise ConfigError(
            "--hourly is for the table: the JSON already has each hour (pt_chunks_by_hour, ...)"
        )
    if opts["peak_tpm"] is None and opts["peak_rps"] is None:
        if profile is None or profile.peak is None:
            raise ConfigError(
                "give the forecast peak: --peak-tpm, --peak-rps or --peak-fps, or a --profile CSV (its busiest "
                "hour)"
            )
        per_hour = profile.peak if profile.unit == "tokens" else profile.peak * (prompt + output)
        opts["peak_tpm"] = per_hour / 60.0
    if opts["max_tokens"] is not None and opts["max_tokens"] < output:
        raise ConfigError(
            f"--max-tokens {opts['max_tokens']} is below the {output} output tokens per request: "
            "a request cannot produce more than its max_tokens"
        )
    if opts["max_tokens"] is not None and output == 0:
        raise ConfigError("--max-tokens does not apply with 0 output tokens: embeddings generate nothing")
    if opts["tpot"] is not None and output == 0:
        raise ConfigError(
            "--tpot does not apply with 0 output tokens: embeddings produce no tokens, so no TPOT"
        )
    peak_tpm = opts["peak_tpm"] or opts["peak_rps"] * (prompt + output) * 60.0
    if not 1.0 <= peak_tpm <= MAX_PEAK_TPM:  # a CSV's or a req/s peak, in tokens
        raise ConfigError(
            f"a peak of {peak_tpm:,.4g} tokens/min is outside [1, {MAX_PEAK_TPM:,.0f}]: check the forecast's units"
        )
    if opts["monthly_tokens"] is not None and opts["monthly_tokens"] > peak_tpm * MINUTES_PER_MONTH * (
        1 + 1e-9
    ):
        raise ConfigError(
            f"--monthly-tokens {opts['monthly_tokens']:,.4g} is more than the peak reaches running all month "
            f"({peak_tpm * MINUTES_PER_MONTH:,.4g} tokens): raise the peak or lower the volume"
        )
    forecast = Forecast(
        peak_tpm,
        prompt,
        output,
        opts["max_tokens"],
        opts["monthly_tokens"],
        opts["load_factor"],
        profile,
        flows,
    )
    warnings = []
    if forecast.peak_requests_per_s > WORKSPACE_QPS_LIMIT:
        warnings.append(
            f"a peak of {forecast.peak_requests_per_s:,.0f} req/s is above the {WORKSPACE_QPS_LIMIT:.0f} queries per "
            "second a workspace's provisioned-throughput endpoints allow by default: ask the account team to raise "
            "it, or spread the load over workspaces"
        )
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    slo = PlanSlos(_seconds(opts["ttft"], "--ttft"), _seconds(opts["tpot"], "--tpot"))
    if runs and slo == PlanSlos():
        slo = _slos_of(runs[0], output)
    prices_path = opts["prices"] or EXAMPLE_PRICES
    prices = load_prices(prices_path)
    kind = "embedding" if output == 0 else "decoder"
    workspace = _workspace(opts["endpoint"], opts["registered_model"], opts["model_version"], opts["host"])
    if workspace:
        opts["architectures"] = tuple(dict.fromkeys((*workspace, *opts["architectures"])))
    archs = _candidates(opts["architectures"], tuple(measured), kind, prompt, opts["max_tokens"] or output)
    chosen = set(opts["architectures"]) | set(measured)
    plans = []
    left_out = []
    for arch in archs:  # one at a time, so that a model limit names its architecture
        try:
            plans += make_plan(
                forecast,
                slo,
                [arch],
                gpu=gpu,
                dtype=opts["dtype"],
                tp=tp,
                headroom=opts["headroom"],
                prices=prices,
                measured=measured,
                max_refused=opts["max_refused"],
                workspace=workspace,
            )
        except ValueError as exc:  # e.g. the request does not fit one replica's KV cache
            where = (
                f"{arch} on {gpu}"
                + (f" at TP {tp}" if tp else "")
                + (f" in {opts['dtype']}" if opts["dtype"] else "")
            )
            if arch in chosen or not (tp or opts["dtype"]):
                raise ConfigError(f"{where}: {exc}") from None
            left_out.append(arch)  # a default candidate the forced hardware cannot hold
    if left_out:
        forced = " in ".join(x for x in (f"TP {tp}" if tp else "", opts["dtype"] or "") if x)
        click.echo(f"note: left out, they do not fit {gpu} at {forced}: {', '.join(left_out)}", err=True)
    if not plans:
        raise ConfigError("no candidate fits that hardware: give a larger --tp or name one with --arch")
    context = PlanContext(
        slo=slo,
        headroom=opts["headroom"],
        prices=prices,
        gpu=gpu,
        dtype=opts["dtype"],
        tp=tp,
        max_refused=opts["max_refused"],
        runs=tuple(opts["run_dirs"]),
        warnings=tuple(warnings),
        endpoint=opts["endpoint"],
        registered_model=None
        if opts["registered_model"] is None
        else (opts["registered_model"], str(opts["model_version"])),
    )
    if opts["fmt"] == "json":
        click.echo(render_plan_json(plans, forecast, context))
    else:
        click.echo(render_plan_table(plans, forecast, context))
        if opts["hourly"]:
            click.echo("\n" + render_hourly(plans, forecast))
    if plans and not any(p.feasible for p in plans):
        why = "; ".join(f"{p.architecture}: {p.binds} too slow even unloaded" for p in plans)
        raise Infeasible(
            f"infeasible: no candidate can meet the SLOs at this mix ({why}); relax them or add --arch"
        )


def _workspace(
    endpoint: str | None, model: str | None, version: int | None, host: str | None
) -> dict[str, WorkspaceFacts]:
    """``--endpoint`` or ``--registered-model``: what the workspace says (:mod:`loadtest.client.workspace`), by
    architecture."""
    from analysis.cost_basis import WorkspaceFacts
    from loadtest.client.workspace import read_endpoint

    if endpoint is not None and model is not None:
        raise ConfigError(
            "give --endpoint (an endpoint that serves a model) or --registered-model (a model with no endpoint "
            "yet), not both"
        )
    if version is not None and model is None:
        raise ConfigError("--model-version is the version of a --registered-model: give one")
    if model is not None:
        if version is None:
            raise ConfigError(
                f"--registered-model {model}: give its version with --model-version N (the workspace's "
                "optimization info is per version)"
            )
        return _registered_model(model, version, host)
    if endpoint is None:
        if host is not None:
            raise ConfigError("--host names the workspace of an --endpoint or a --registered-model: give one")
        return {}
    read = read_endpoint(endpoint, host=host)
    facts = WorkspaceFacts(
        endpoint=read.endpoint,
        source=read.source,
        entity_name=read.entity_name,
        entity_version=read.entity_version,
        min_provisioned_throughput=read.min_provisioned_throughput,
        max_provisioned_throughput=read.max_provisioned_throughput,
        provisioned_model_units=read.provisioned_model_units,
        scale_to_zero_enabled=read.scale_to_zero_enabled,
        throughput_chunk_size=read.throughput_chunk_size,
        dbu_per_chunk_hour=read.dbus,
    )
    click.echo(
        f"endpoint {endpoint} at {read.host} ({read.auth_type} auth): serves {read.entity_name} version "
        f"{read.entity_version} ({read.architecture}), configured {facts.configured()}"
        + (f", throughput_chunk_size {read.throughput_chunk_size:,}" if read.throughput_chunk_size else ""),
        err=True,
    )
    return {read.architecture: facts}


def _registered_model(name: str, version: int, host: str | None) -> dict[str, WorkspaceFacts]:
    """``--registered-model``: its optimization info's chunk size and DBUs, by architecture; no configured band."""
    from analysis.cost_basis import WorkspaceFacts
    from loadtest.client.workspace import read_registered_model

    read = read_registered_model(name, version, host=host)
    facts = WorkspaceFacts(
        endpoint=None,
        source=read.source,
        entity_name=read.entity_name,
        entity_version=read.entity_version,
        throughput_chunk_size=read.throughput_chunk_size,
        dbu_per_chunk_hour=read.dbus,
    )
    found = (
        f"throughput_chunk_size {read.throughput_chunk_size:,}"
        + (f", {read.dbus:g} DBUs per chunk-hour" if read.dbus is not None else "")
        if read.throughput_chunk_size
        else "no throughput_chunk_size (sized in model units)"
    )
    click.echo(
        f"registered model {name} version {version} at {read.host} ({read.auth_type} auth): "
        f"{read.architecture}, {found}; no endpoint, so no configured band",
        err=True,
    )
    return {read.architecture: facts}


def _profile(given: str | None) -> LoadProfile | None:
    """``--profile``: a named shape, else a CSV file."""
    from loadtest.spec.profile import SHAPES, read_profile, shape

    if given is None:
        return None
    if given in SHAPES:
        return shape(given)
    path = Path(given)
    if not path.is_file():
        raise ConfigError(f"--profile {given}: neither a shape ({', '.join(SHAPES)}) nor a CSV file")
    return read_profile(path)


def _candidates(
    given: tuple[str, ...], measured: tuple[str, ...], kind: str, prompt: int, reserved: int
) -> tuple[str, ...]:
    """The architectures to plan: those given with --arch (default: every ``kind`` model of the catalog), then
    the measured ones. A decoder request holds its prompt and up to ``reserved`` (max_tokens) output tokens in its
    context: a given or measured architecture with a shorter context is an error, a default one is left out with
    a note (embedding models clip their input instead, see :mod:`analysis.plan`)."""
    from loadtest.model.architectures import ARCHITECTURES

    chosen = given + tuple(a for a in measured if a not in given)
    archs = chosen if given else tuple(k for k, a in ARCHITECTURES.items() if a.kind == kind)
    archs += tuple(a for a in chosen if a not in archs)
    need = prompt + reserved
    short = [a for a in archs if a in ARCHITECTURES and ARCHITECTURES[a].kind == "decoder"]
    short = [a for a in short if need > ARCHITECTURES[a].context]
    for arch in short:
        if arch in chosen:
            raise ConfigError(
                f"{arch}: a request of {prompt} input + {reserved} output tokens ({need}) exceeds its "
                f"{ARCHITECTURES[arch].context}-token context"
            )
    if short:
        archs = tuple(a for a in archs if a not in short)
        if not archs:
            raise ConfigError(f"no {kind} model in the catalog has a context of {need} tokens")
        left_out = ", ".join(f"{a} ({ARCHITECTURES[a].context})" for a in short)
        click.echo(f"note: left out, context shorter than {need} tokens: {left_out}", err=True)
    return archs


def _load_run(path: Path) -> RunData:
    """:func:`analysis.load_run`, refusing a run with no records (exit 98, as ``loadtest analyze`` does)."""
    from analysis import load_run, require_records

    return require_records(load_run(path))


def _check_simulator_run(run: RunData, arch: str | None, band: float | None) -> None:
    """A simulator run knows its architecture and band: ``--run-arch`` / ``--run-band`` may only repeat them."""
    from analysis.measured import simulated_band

    simulated = run.manifest.simulator
    if simulated is None or (arch is None and band is None):
        return
    sim = simulated.settings
    sim_arch = str(sim.value("architecture"))
    known = "a simulator run already knows its architecture and band"
    if arch is not None and arch != sim_arch:
        raise ConfigError(f"{run.run_dir} simulated {sim_arch}, not {arch}: {known} (drop --run-arch)")
    if band is not None:
        sim_band = simulated_band(sim)
        if not math.isclose(band, sim_band, rel_tol=1e-6):
            raise ConfigError(
                f"{run.run_dir} simulated a band of {sim_band:g} tokens/s, not {band:g}: {known} (drop --run-band)"
            )


def _slos_of(run: RunData, output: int) -> PlanSlos:
    """The plan's SLOs from a measured run's (:func:`analysis.run_plan.slos_of_classes`), said in a note."""
    from analysis.plan import PlanSlos
    from analysis.run_plan import slos_of_classes

    chosen = slos_of_classes(run.manifest.spec.request_classes, output)
    if chosen != PlanSlos():
        given = " ".join(f"--{k} {v:g}s" for k, v in (("ttft", chosen.ttft_s), ("tpot", chosen.tpot_s)) if v)
        click.echo(
            f"note: SLOs from {run.run_dir.name}: {given} (its tightest; the model checks them on means)",
            err=True,
        )
    return chosen
