"""``loadtest noise RUN RUN [RUN ...]``: measure the run-to-run noise of a scenario from A/A runs (the same
scenario, nothing changed) and store it as noise floors for ``loadtest gate --baseline``
(:func:`analysis.gate.noise_floors`)."""

from __future__ import annotations

from pathlib import Path

import click

from loadtest.cli.gate import NOISE_FILE, NOISE_FORMAT
from loadtest.cli.options import write_atomically

__all__ = ["noise"]

METRICS = (
    "ttft_p50",
    "ttft_p95",
    "ttft_p99",
    "tpot_p50",
    "tpot_p95",
    "tpot_p99",
    "itl_p50",
    "itl_p95",
    "e2e_p50",
    "e2e_p95",
    "e2e_p99",
    "output_tok_per_s",
    "input_tok_per_s",
    "total_tok_per_s",
    "req_per_s",
)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help=f"Where to write the floors (default: the first run's {NOISE_FILE}, which loadtest gate reads when that "
    "run is its --baseline).",
)
def noise(runs: tuple[Path, ...], out: Path | None) -> None:
    """Measure noise floors from two or more runs of the same scenario with nothing changed.

    For each metric, the floor is the smallest relative widening that makes every pair's 95 % interval of the
    ratio contain 1 in every stage they share: a comparison with the gate then calls none of these A/A
    differences a regression. Three runs or more give a floor worth trusting.
    """
    import orjson

    from analysis import load_run, require_records
    from analysis.gate import noise_floors, run_stages

    data = [require_records(load_run(run)) for run in runs]
    floors = noise_floors(data, METRICS)
    stages = sorted(set.intersection(*(set(run_stages(d)) for d in data)))
    target = out or runs[0] / NOISE_FILE
    body = {
        "format": NOISE_FORMAT,
        "runs": [d.run_dir.name for d in data],
        "stages": stages,
        "floors": floors,
    }
    write_atomically(target, lambda tmp: tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2)))
    width = max(len(m) for m in METRICS)
    for metric in METRICS:
        floor = floors.get(metric)
        text = (
            f"{floor:6.1%}"
            if floor is not None
            else "     –  not measured: no interval in any stage (too few requests)"
        )
        click.echo(f"{metric.ljust(width)}  {text}")
    click.echo(f"noise floors of {len(data)} runs over {len(stages)} shared stage(s) → {target}")
