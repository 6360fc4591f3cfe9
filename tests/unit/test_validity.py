"""When a stage's load was not the planned one (analysis/validity.py): exact shares and the Poisson rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from analysis.load_check import StageLoad
from analysis.validity import offered_short

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
