"""``loadtest plan``: provisioning recommendations per architecture (see :mod:`analysis.plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from loadtest.cli_common import seconds as _seconds
from loadtest.errors import ConfigError

__all__ = ["plan"]


@click.command()
@click.option(
    "--peak-tpm",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Forecast peak: total (input + output) tokens per minute.",
)
@click.option(
    "--peak-rps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Forecast peak as requests/s instead (tokens/min = req/s × (input + output) × 60).",
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
    type=click.FloatRange(min=0),
    default=None,
    help="Monthly token volume (default: peak × minutes in a month × --load-factor).",
)
@click.option(
    "--load-factor",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.35,
    show_default=True,
    help="Average load as a share of peak, for the monthly volume.",
)
@click.option("--ttft", default=None, help="SLO on TTFT, e.g. 1s (checked on the model's mean).")
@click.option("--tpot", default=None, help="SLO on TPOT, e.g. 50ms (checked on the model's mean).")
@click.option(
    "--headroom",
    type=click.FloatRange(min=0),
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
@click.option("--gpu", default="h100", show_default=True)
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
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Provisioned tokens/s (max of the band) of the --run endpoint (simulator runs know it; with one --run).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def plan(**opts: Any) -> None:
    """Recommend provisioned throughput (chunks / band or model units) or pay-per-token per architecture, and the
    monthly cost of each, for a forecast peak and SLOs."""
    import orjson

    from analysis import load_run
    from analysis.plan import Forecast, SloTargets, load_prices, measured_from_run
    from analysis.plan import plan as make_plan
    from loadtest.perfmodel import ARCHITECTURES
    from reports.plan_table import render_plan_table
    from scenarios import SHIPPED_DIR

    prompt, output = opts["prompt_tokens"], opts["output_tokens"]
    runs = [load_run(path) for path in opts["run_dirs"]]
    if len(runs) > 1 and (opts["run_arch"] or opts["run_band"]):
        raise ConfigError("--run-arch and --run-band describe one run: give a single --run with them")
    measured = {}
    for run in runs:
        arch, measured_run = measured_from_run(run, opts["run_arch"], opts["run_band"])
        if arch in measured:
            raise ConfigError(f"two runs measured {arch}: give one run per architecture")
        measured[arch] = measured_run
    mix_from = load_run(opts["mix_from"]) if opts["mix_from"] is not None else (runs[0] if runs else None)
    if mix_from is not None and (prompt is None or output is None):
        ok = mix_from.records
        ok = ok[ok["ok"] & ok["prompt_tokens"].notna() & ok["output_tokens"].notna()]
        if ok.empty:
            raise ConfigError(
                f"{mix_from.run_dir} has no successful request with usage counts to take a mix from"
            )
        prompt = prompt if prompt is not None else round(float(ok["prompt_tokens"].astype("float64").mean()))
        output = output if output is not None else round(float(ok["output_tokens"].astype("float64").mean()))
    if prompt is None or output is None:
        raise ConfigError("give --prompt-tokens and --output-tokens, or --mix-from RUN")
    if (opts["peak_tpm"] is None) == (opts["peak_rps"] is None):
        raise ConfigError("give the forecast peak: --peak-tpm or --peak-rps (one of them)")
    peak_tpm = opts["peak_tpm"] or opts["peak_rps"] * (prompt + output) * 60.0
    forecast = Forecast(
        peak_tpm, prompt, output, opts["max_tokens"], opts["monthly_tokens"], opts["load_factor"]
    )
    slo = SloTargets(_seconds(opts["ttft"], "--ttft"), _seconds(opts["tpot"], "--tpot"))
    prices_path = opts["prices"] or SHIPPED_DIR / "prices" / "example.toml"
    prices = load_prices(prices_path)
    kind = "embedding" if output == 0 else "decoder"
    archs = opts["architectures"] or tuple(k for k, a in ARCHITECTURES.items() if a.kind == kind)
    archs = tuple(archs) + tuple(a for a in measured if a not in archs)
    plans = make_plan(
        forecast, slo, archs, gpu=opts["gpu"], headroom=opts["headroom"], prices=prices, measured=measured
    )
    if opts["fmt"] == "json":
        payload = {
            "forecast": {
                "peak_tokens_per_min": forecast.peak_tokens_per_min,
                "prompt_tokens": prompt,
                "output_tokens": output,
                "tokens_per_month": forecast.tokens_per_month,
            },
            "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
            "headroom": opts["headroom"],
            "prices": prices.label,
            "measured_runs": [str(path) for path in opts["run_dirs"]],
            "plans": [p.to_dict() for p in plans],
        }
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(render_plan_table(plans, forecast, prices.label))
