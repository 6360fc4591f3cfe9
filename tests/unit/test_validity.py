"""When a stage's load was not the planned one (analysis/validity.py): exact shares and the Poisson rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from analysis.load_check import StageLoad
from analysis.validity import offered_short
from loadtest.rundir import Host, Manifest, RunDistribution

LOAD = StageLoad(
    stage="poisson@10rps",
    kind="rate",
    window_s=10.0,
    target_rps=10.0,
    offered_rps=10.0,
    target_tokens_per_min={},
    offered_tokens_per_min={},
    no_free_user=0,
    dropped=0,
    lag_p50_s=0.001,
    lag_p99_s=0.002,
    generator_cpu_share=0.1,
    loop_delay_p50_s=0.0005,
    loop_delay_p99_s=0.002,
    loop_delay_max_s=0.004,
    engine_saturated=False,
    kept_up=True,
    capped=False,
    reason=None,
)


def test_one_percent_of_arrivals_waiting_is_still_the_planned_load() -> None:
    assert offered_short(LOAD) is None
    assert offered_short(replace(LOAD, no_free_user=1, capped=True)) is None  # 1 of 100: at the bound
    waited = offered_short(replace(LOAD, no_free_user=2, capped=True))
    assert waited == (
        "2 of 100 arrivals (2.0%) waited for a free user or were dropped (the in-flight cap was reached; more "
        "than 1% is not the planned load)"
    )


def test_dropped_arrivals_are_counted_once_and_added_to_those_sent() -> None:
    # 60 sent in the window, 40 dropped unsent (they had found no free user too): 40 of 100
    text = offered_short(replace(LOAD, offered_rps=6.0, no_free_user=40, dropped=40, capped=True))
    assert text is not None and text.startswith("40 of 100 arrivals (40.0%)")


def test_too_few_sent_is_short_only_beyond_poisson_chance() -> None:
    # 100 expected: 88 sent is under 90 % but within 3 σ (70); 69 is beyond both
    assert offered_short(replace(LOAD, offered_rps=8.8)) is None
    assert offered_short(replace(LOAD, offered_rps=6.9)) == "offered 6.9 req/s of the 10 req/s planned"
    assert (
        offered_short(replace(LOAD, target_rps=None, offered_rps=1.0)) is None
    )  # a closed loop has no target


def test_assess_keeps_the_runs_problems_apart_from_each_stages(tmp_path: Path) -> None:
    import dataclasses

    import orjson
    import pandas as pd

    from analysis.validity import Problem, assess
    from loadtest.rundir import read_manifest
    from tests.helpers import manifest_dict

    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest_dict(status="interrupted")))
    manifest = read_manifest(tmp_path)
    capped = replace(LOAD, stage="s2", no_free_user=30, capped=True, reason="30 arrivals waited")
    late = replace(
        LOAD, stage="s3", kept_up=False, reason="engine saturated: event-loop delay p99 40.0 ms > 15 ms"
    )
    validity = assess(manifest, [], [LOAD, capped, late], pd.DataFrame(), 0, None)
    assert validity.problems == (
        Problem(None, "the run is interrupted: its last stage may be cut short"),
        Problem(
            "s3", "the generator did not keep up: engine saturated: event-loop delay p99 40.0 ms > 15 ms"
        ),
        Problem(
            "s2",
            "the planned load was not offered: 30 of 100 arrivals (30.0%) waited for a free user or were dropped "
            "(the in-flight cap was reached; more than 1% is not the planned load)",
        ),
        Problem(None, "the run recorded no request"),
    )
    assert [p.text for p in validity.problems_for(["poisson@10rps"])] == [
        "the run is interrupted: its last stage may be cut short",
        "the run recorded no request",
    ]
    one = pd.DataFrame({"ok": [True], "error_class": [None]})
    complete = assess(dataclasses.replace(manifest, status="complete"), [], [LOAD], one, 0, None)
    assert not complete.invalid


def _manifest(tmp_path: Path, **changes: object) -> Manifest:
    """A read manifest (one process, 1 CPU, an endpoint run) with ``changes`` to its fields."""
    import dataclasses

    import orjson

    from loadtest.rundir import read_manifest
    from tests.helpers import manifest_dict

    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest_dict()))
    return dataclasses.replace(read_manifest(tmp_path), **changes)  # type: ignore[arg-type]


def _busy(*shares: float) -> list[StageLoad]:
    return [replace(LOAD, stage=f"c{i}", generator_cpu_share=share) for i, share in enumerate(shares)]


def test_up_to_half_a_core_no_scale_out_is_advised(tmp_path: Path) -> None:
    from analysis.validity import scale_out

    manifest = _manifest(tmp_path, host=Host("linux", 8, 8))
    assert scale_out(manifest, _busy(0.1, 0.5)) is None  # at the bound: not past it
    assert scale_out(manifest, [replace(LOAD, generator_cpu_share=None)]) is None
    assert scale_out(manifest, _busy(0.1, 0.51)) == (
        "the engine passed 50% of a core (c1 51%), where its p99 timings drift by several ms: --processes 2 "
        "(the run's machine had 8 usable CPUs, 7 to spare) or --expect-workers 2 (workers on other machines) "
        "would have measured more truly"
    )


@pytest.mark.parametrize(
    ("host", "simulated", "dist", "shares", "advice"),
    [
        # cores to spare: as many processes as bring the busiest share back to half a core, ceil(1 × 0.99 / 0.5)
        (
            Host("linux", 4, 4),
            False,
            RunDistribution(1, 0),
            (0.62, 0.99),
            "the engine passed 50% of a core (c0 62%, c1 99%), where its p99 timings drift by several ms: "
            "--processes 2 (the run's machine had 4 usable CPUs, 3 to spare) or --expect-workers 2 (workers on "
            "other machines) would have measured more truly",
        ),
        # ... but no more than there are: ceil(2 × 0.9 / 0.5) = 4 wanted, 3 to spare
        (
            Host("linux", 4, 4),
            False,
            RunDistribution(2, 0, auto=True),
            (0.9,),
            "the busiest engine process passed 50% of a core (c0 90%), where its p99 timings drift by several ms: "
            "--processes 3 (the run's machine had 4 usable CPUs, 3 to spare) or --expect-workers 4 (workers on "
            "other machines) would have measured more truly",
        ),
        # the project's machine with the simulator: none to spare, other machines only
        (
            Host("linux", 2, 2),
            True,
            RunDistribution(1, 0, auto=True),
            (0.57,),
            "the engine passed 50% of a core (c0 57%), where its p99 timings drift by several ms: "
            "--expect-workers 2 (workers on other machines) would have measured more truly; the run's machine had "
            "2 usable CPUs, none to spare beside the CLI and the simulator",
        ),
        # 8 CPUs, 2 of them usable (taskset), 2 processes already: none more
        (
            Host("linux", 8, 2),
            False,
            RunDistribution(2, 0),
            (0.7,),
            "the busiest engine process passed 50% of a core (c0 70%), where its p99 timings drift by several ms: "
            "--expect-workers 3 (workers on other machines) would have measured more truly; the run's machine had "
            "2 usable CPUs, none more to spare beside the CLI",
        ),
        # a run from before usable_cpus was recorded counts every CPU
        (
            Host("linux", 6, None),
            True,
            RunDistribution(1, 0),
            (0.8,),
            "the engine passed 50% of a core (c0 80%), where its p99 timings drift by several ms: --processes 2 "
            "(the run's machine had 6 CPUs, 4 to spare) or --expect-workers 2 (workers on other machines) would "
            "have measured more truly",
        ),
        # no CPU count at all
        (
            Host("linux", None, None),
            False,
            RunDistribution(1, 0),
            (0.6,),
            "the engine passed 50% of a core (c0 60%), where its p99 timings drift by several ms: --processes 2 "
            "(given the cores to spare) or --expect-workers 2 (workers on other machines) would have measured "
            "more truly",
        ),
        # workers on other machines already: more of them, ceil(2 × 0.7 / 0.5) = 3
        (
            Host("linux", 64, 64),
            False,
            RunDistribution(1, 2, master="0.0.0.0:5557"),
            (0.7,),
            "the busiest engine process passed 50% of a core (c0 70%), where its p99 timings drift by several ms: "
            "--expect-workers 3 (workers on other machines) would have measured more truly",
        ),
    ],
)
def test_scale_out_suggests_processes_where_the_machine_had_cores_to_spare(
    tmp_path: Path,
    host: Host,
    simulated: bool,
    dist: RunDistribution,
    shares: tuple[float, ...],
    advice: str,
) -> None:
    from analysis.validity import scale_out
    from loadtest.rundir import SimulatedEndpoint
    from loadtest.spec.simulator import SimSettings

    simulator = SimulatedEndpoint(SimSettings.from_mapping({}), 0) if simulated else None
    manifest = _manifest(tmp_path, host=host, distribution=dist, simulator=simulator)
    assert scale_out(manifest, _busy(*shares)) == advice


def test_scale_out_is_a_doubtful_item_not_a_problem(tmp_path: Path) -> None:
    import pandas as pd

    from analysis.validity import SCALE_OUT, assess

    manifest = _manifest(tmp_path, host=Host("linux", 2, 2))
    one = pd.DataFrame({"ok": [True], "error_class": [None]})
    busy = assess(manifest, [], _busy(0.3, 0.75), one, 0, None)
    assert not busy.invalid and busy.doubtful
    assert (SCALE_OUT, busy.text_of(SCALE_OUT), True) in busy.items
    assert busy.text_of(SCALE_OUT) == (
        "the engine passed 50% of a core (c1 75%), where its p99 timings drift by several ms: --expect-workers 2 "
        "(workers on other machines) would have measured more truly; the run's machine had 2 usable CPUs, none "
        "to spare beside the CLI"
    )
    generator = busy.text_of("generator")
    assert generator is not None and generator.startswith("kept up in every stage (CPU up to 75% of a core")
    calm = assess(manifest, [], _busy(0.3, 0.5), one, 0, None)
    assert calm.text_of(SCALE_OUT) is None and not calm.doubtful
    # a saturated stage is the generator item's verdict (invalid); the advice is said beside it, once
    saturated = replace(
        LOAD,
        stage="c2",
        generator_cpu_share=0.96,
        kept_up=False,
        engine_saturated=True,
        reason="engine saturated",
    )
    both = assess(manifest, [], [*_busy(0.3), saturated], one, 0, None)
    assert both.invalid and [label for label, _, _ in both.items].count(SCALE_OUT) == 1
    assert "(c2 96%)" in (both.text_of(SCALE_OUT) or "")
