"""One ``loadtest run``: resolve the endpoint (the simulator, or a real one with auth), preflight, run, summarise.

Called by the CLI; usable from Python. Never imports gevent (the engine runs in a child process).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import StageLoad, StageSummary, check_load, load_run
from analysis.scan import open_scan, summarize_scan
from loadtest.client.auth import AuthOptions, child_environment, resolve_auth
from loadtest.client.probe import first_model_id, preflight
from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.client.scrub import public_url
from loadtest.errors import ConfigError
from loadtest.rundir import ENGINE_LOG, GeneratorVerdict, SimulatedEndpoint, write_manifest
from loadtest.runner.calibrate import calibrate_prompts, http_counter, tokenizer_words
from loadtest.runner.live import LiveLine, watch
from loadtest.runner.run import Distribution, RunOutcome, execute_run, new_run_dir
from loadtest.runner.scrape import MetricsPlan, resolve_metrics
from loadtest.runner.simproc import SimulatorProcess
from loadtest.spec.assemble import shorten_idle_for_simulator
from loadtest.spec.processes import describe_auto, usable_cpus
from loadtest.spec.prompts import PromptCalibration
from loadtest.spec.pyscenario import scenario_failure
from loadtest.spec.scenario import Scenario

__all__ = ["LaunchResult", "launch"]


@dataclass(frozen=True, slots=True)
class LaunchResult:
    outcome: RunOutcome
    summaries: list[StageSummary]
    loads: list[StageLoad]
    records_total: int
    most_common_error: str | None


def _endpoint_and_auth(
    scenario: Scenario,
) -> tuple[EndpointSpec, Callable[[], Mapping[str, str]], dict[str, str]]:
    """The endpoint spec, the request headers (a call each time: an OAuth token refreshes) for the preflight and
    the server metrics, and the engine child's extra environment."""
    ep = scenario.endpoint
    assert ep is not None
    if ep.databricks:
        options = AuthOptions(host=ep.host, profile=ep.profile, auth_type=ep.auth)
        provider = resolve_auth(options)
        host = provider.host or ep.host
        if not host:
            raise ConfigError(
                "a Databricks endpoint needs a host: [endpoint].host, DATABRICKS_HOST or a profile"
            )
        assert ep.endpoint is not None
        spec = EndpointSpec(
            base_url=host,
            model=ep.endpoint,
            api="databricks",
            path_style=ep.path,  # type: ignore[arg-type]
            include_usage=ep.include_usage,
            name=ep.name or ep.endpoint,
            auth="databricks",
            auth_type=str(provider.describe()["auth_type"]),
        )
        return spec, provider.headers, child_environment(options)
    assert ep.url is not None
    if not ep.url.startswith(("http://", "https://")):
        raise ConfigError(f"the endpoint must be an http(s) URL, got {ep.url!r}")
    provider = resolve_auth(
        AuthOptions(api_key_env=ep.api_key_env, auth_type=None if ep.api_key_env else "none")
    )
    model = ep.model or first_model_id(ep.url, provider.headers())
    if not model:
        raise ConfigError(f"a model name is required: {public_url(ep.url)}/models lists none (use --model)")
    spec = EndpointSpec(
        base_url=ep.url,
        model=model,
        api_key_env=ep.api_key_env,
        include_usage=ep.include_usage,
        name=ep.name or model,
    )
    return spec, provider.headers, {}


def launch(
    scenario: Scenario,
    *,
    out: Path,
    skip_preflight: bool = False,
    read_timeout_s: float = 120.0,
    echo: Callable[[str], None] = lambda _line: None,
    distribution: Distribution | None = None,
    live: LiveLine | None = None,
    server_metrics: str | None = None,
) -> LaunchResult:
    """``live``: the progress line to draw while the engine runs (``echo``'s lines wipe it first);
    ``server_metrics``: ``--server-metrics`` (``auto`` when None, ``off`` or a URL; :mod:`loadtest.runner.scrape`)."""
    if live is not None:
        echo = live.echo_through(echo)
    vocabulary = tokenizer_words(
        scenario.prompts
    )  # a tokenizer that is not there: refused before anything starts
    if scenario.endpoint is None:
        settings = scenario.simulator
        scenario, shortened = shorten_idle_for_simulator(scenario)
        if shortened is not None:
            echo(shortened)
        with SimulatorProcess(settings.sim_args(scenario.seed)) as sim:
            base = sim.url + "/v1"
            echo(f"embedded simulator at {base} ({settings.describe()})")
            model = first_model_id(base, {}) or str(settings.architecture or "sim")
            endpoint = EndpointSpec(base_url=base, model=model, name="sim")
            simulated = SimulatedEndpoint(settings, scenario.seed)
            metrics = resolve_metrics(server_metrics, endpoint, echo=echo)
            prompts = _calibrate(scenario, endpoint, {}, read_timeout_s, echo, skip_preflight, vocabulary)
            return _execute(
                scenario,
                endpoint,
                {},
                out,
                read_timeout_s,
                echo,
                simulated,
                distribution,
                live,
                metrics,
                prompts,
            )
    endpoint, headers, child_env = _endpoint_and_auth(scenario)
    if not skip_preflight:  # a Python scenario need declare no step: then a chat probe
        first = scenario.classes[0] if scenario.classes else RequestClass(name="chat")
        preflight(endpoint, first, headers(), timeout_s=read_timeout_s)
    prompts = _calibrate(scenario, endpoint, headers(), read_timeout_s, echo, skip_preflight, vocabulary)
    metrics = resolve_metrics(server_metrics, endpoint, headers, echo=echo)
    return _execute(
        scenario, endpoint, child_env, out, read_timeout_s, echo, None, distribution, live, metrics, prompts
    )


def _calibrate(
    scenario: Scenario,
    endpoint: EndpointSpec,
    headers: Mapping[str, str],
    read_timeout_s: float,
    echo: Callable[[str], None],
    skip_preflight: bool,
    vocabulary: tuple[tuple[str, ...], str | None],
) -> PromptCalibration:
    """The prompt calibration (:mod:`loadtest.runner.calibrate`), printed in one line."""
    counter = None if skip_preflight else http_counter(endpoint, headers, read_timeout_s)
    prompts = calibrate_prompts(
        scenario.classes if scenario.python is None else (),  # a Python scenario's module writes its prompts
        scenario.prompts,
        counter,
        seed=scenario.seed,
        skipped="--skip-preflight",
        vocabulary=vocabulary,
    )
    if prompts.fits:
        echo(f"prompts: {prompts.describe()}")
    for warning in prompts.warnings:
        echo(f"warning: prompts: {warning}")
    return prompts


def _processes_note(dist: Distribution | None, simulated: bool) -> str:
    """The start line's load processes: how many and, for ``--processes auto``, how it counted; nothing for one
    process given as such."""
    if dist is None or (not dist.distributed and not dist.auto):
        return ""
    if dist.expect_workers:
        return f"; a master for {dist.expect_workers} worker(s) on other machines"
    count = f"{dist.processes} load process{'es' if dist.processes != 1 else ''}"
    if dist.auto:
        count += f" ({describe_auto(usable_cpus(), simulated)})"
    return f"; {count}"


def _execute(
    scenario: Scenario,
    endpoint: EndpointSpec,
    child_env: dict[str, str],
    out: Path,
    read_timeout_s: float,
    echo: Callable[[str], None],
    simulator: SimulatedEndpoint | None,
    distribution: Distribution | None,
    live: LiveLine | None,
    metrics: MetricsPlan | None = None,
    prompts: PromptCalibration | None = None,
) -> LaunchResult:
    run_dir = new_run_dir(out, scenario.name)
    spec = scenario.run_spec(
        run_id=uuid.uuid4().hex[:12],
        out_dir=str(run_dir),
        endpoint=endpoint,
        read_timeout_s=read_timeout_s,
        simulated=simulator is not None,
        prompts=prompts,
    )
    total = sum(s.duration_s for s in scenario.stages if not s.idle)
    idle = sum(s.duration_s for s in scenario.stages if s.idle)
    plan = f"{len(scenario.stages)} stage(s), {total:.0f}s of load" + (
        f" and {idle:.0f}s idle" if idle else ""
    )
    if scenario.sweep:
        sw = scenario.sweep
        plan = (
            f"automatic sweep (baseline, saturation at {sw.max_concurrency} users, up to {sw.points} "
            f"rates between; {sw.duration_s:.0f}s each)"
        )
    where = _processes_note(distribution, simulated=simulator is not None)
    echo(f"run {run_dir}: {plan} against {public_url(endpoint.base_url)} model {endpoint.model}{where}")

    said: set[tuple[Any, Any]] = set()  # each worker reports a scenario error once; say it once

    def progress(event: dict[str, Any]) -> None:
        if event.get("event") == "stage_end":
            flows = f", {event['flows']} flows" if "flows" in event else ""
            echo(f"  {event['stage']}: {event.get('records', 0)} requests{flows}")
        elif event.get("event") == "scenario_error" and (event.get("where"), event.get("detail")) not in said:
            said.add((event.get("where"), event.get("detail")))
            where = f"{event['where']}: " if event.get("where") else ""
            counted = (
                "the run stops"
                if event.get("task") == "on_start"
                else "each flow it ends is counted as a flow error"
            )
            echo(
                f"warning: scenario error: {where}{event.get('detail')} "
                f"(in {event.get('user')}.{event.get('task')}; {counted})"
            )

    try:
        outcome = execute_run(
            spec,
            run_dir,
            simulator=simulator,
            progress=progress,
            env=child_env,
            distribution=distribution,
            tick=watch(live, spec, run_dir) if live is not None else None,
            metrics=metrics,
        )
    finally:
        if live is not None:
            live.clear()
    if outcome.status == "failed" and scenario.python is not None:
        reason = scenario_failure(run_dir / ENGINE_LOG)
        if reason is not None:  # the module raised when the engine imported it: nothing ran
            raise ConfigError(reason)
    # the frame without the chunk gaps and request ids, and the summaries stage by stage out of core: a soak's
    # ten million records fit in memory that way (docs/performance.md)
    data = load_run(run_dir, gaps=False, request_ids=False)
    scan = open_scan(run_dir)
    order = [s.label for s in scenario.stages]
    summaries = list(summarize_scan(scan, None, order, by_stage=False, capacity=False).stages)
    del scan
    loads = check_load(data.records, data.manifest.stages or ())
    verdict = GeneratorVerdict(
        kept_up=all(load.kept_up for load in loads),
        stages={load.stage: load.reason for load in loads if not load.kept_up},
        capped={load.stage: load.reason for load in loads if load.capped},
    )
    write_manifest(run_dir, dataclasses.replace(data.manifest, generator=verdict))
    details = data.records.loc[~data.records["ok"], "error_detail"].dropna() if len(data.records) else None
    common = str(details.mode().iloc[0]) if details is not None and not details.empty else None
    return LaunchResult(
        outcome=outcome,
        summaries=summaries,
        loads=loads,
        records_total=len(data.records),
        most_common_error=common,
    )
