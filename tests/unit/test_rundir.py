"""The run-directory contract (:mod:`loadtest.rundir`): a manifest written by the code of format 2 reads back typed
and writes back byte for byte; unknown formats are refused; the analysis' record schema is the record's; the
simulator's settings have one definition."""

from __future__ import annotations

import shutil
import typing
from dataclasses import fields
from pathlib import Path

import click
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from analysis.frame import RECORD_SCHEMA, load_run
from loadtest.cli.sim import sim
from loadtest.client.records import RequestRecord
from loadtest.errors import ConfigError
from loadtest.rundir import (
    FORMAT,
    Manifest,
    SimulatedEndpoint,
    StageTarget,
    read_events,
    read_manifest,
    stage_windows,
)
from loadtest.sim.config import SimConfig
from loadtest.spec.runspec import RetryPolicy, RunSpec, SweepPlan
from loadtest.spec.simulator import SIM_KEYS, SIZING_KEYS, SimSettings, default, flag_of
from tests.helpers import jsonl, manifest_dict, records, refused, run_cli

FIXTURE = Path(__file__).parent / "data" / "manifest-format2.json"  # written by `loadtest run -c 1,8 -d 3s`


def test_a_format_2_manifest_reads_typed_and_writes_back_the_same_bytes(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "manifest.json")
    manifest = read_manifest(tmp_path)
    assert (manifest.format, manifest.status, manifest.run_id, manifest.records) == (
        2,
        "complete",
        "4dd8bd3cc713",
        27,
    )
    assert manifest.simulator == SimulatedEndpoint(
        SimSettings(architecture="llama-3.1-8b", gpu="h100", replicas=1, max_batch=256), seed=0
    )
    assert manifest.stage_order == ["concurrency@1", "concurrency@8"]
    assert manifest.stages is not None
    first, second = manifest.stages
    assert first.target == StageTarget(kind="concurrency", users=1)
    assert (first.records, second.records, second.workers, second.drained) == (3, 24, 1, True)
    assert second.generator_cpu_share == pytest.approx(0.047426716316651636)
    assert manifest.generator is not None and manifest.generator.kept_up
    assert manifest.spec.retry is None and manifest.spec.sweep is None and manifest.spec.description == ""
    assert manifest.to_json() == FIXTURE.read_bytes()


def test_stage_windows_from_events_are_what_the_manifest_holds(tmp_path: Path) -> None:
    events = [
        {"event": "stage_start", "t": 10.0, "cpu_s": 1.0, "stage": "t", "target": {"kind": "tokens",
         "users": None, "rate": None, "tokens_per_min": 600.0, "input_tokens_per_min": None,
         "output_tokens_per_min": None, "initial_rate": 2.0}},
        {"event": "stage_window_end", "t": 20.0, "cpu_s": 2.0, "stage": "t"},
        {"event": "stage_end", "t": 30.0, "cpu_s": 3.0, "stage": "t", "rss_max_mb": 70.0, "records": 5,
         "arrivals": 6, "dropped": 1, "no_free_user": 0, "inflight": 0, "drained": True,
         "worker_cpu_share_max": None, "workers": 1, "final_rate": 2.5, "expected_input": 10.0,
         "expected_output": 20.0},
        {"event": "stage_start", "t": 30.0, "cpu_s": 3.0, "stage": "cut", "target": None},
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + b'{"ev')
    tokens, cut = stage_windows(read_events(tmp_path))
    assert tokens.generator_cpu_share == pytest.approx(0.1)  # 2 CPU s over 20 s of wall time
    assert tokens.to_dict() == {
        "label": "t", "start": 10.0, "cpu_start_s": 1.0, "target": events[0]["target"], "window_end": 20.0,
        "end": 30.0, "cpu_end_s": 3.0, "generator_rss_max_mb": 70.0, "records": 5, "arrivals": 6, "dropped": 1,
        "no_free_user": 0, "inflight": 0, "drained": True, "worker_cpu_share_max": None, "workers": 1,
        "final_rate": 2.5, "expected_input": 10.0, "expected_output": 20.0, "generator_cpu_share": 0.1,
    }  # fmt: skip
    assert cut.to_dict() == {"label": "cut", "start": 30.0, "cpu_start_s": 3.0, "target": None}


def test_the_loop_delay_goes_from_stage_end_to_the_manifest_and_back_byte_for_byte(tmp_path: Path) -> None:
    loop = {"loop_delay_p50_s": 0.000412, "loop_delay_p99_s": 0.041503, "loop_delay_max_s": 0.0625}
    events: list[dict[str, typing.Any]] = [
        {"event": "stage_start", "t": 10.0, "cpu_s": 1.0, "stage": "c", "target": {"kind": "concurrency",
         "users": 4, "rate": None}},
        {"event": "stage_window_end", "t": 20.0, "cpu_s": 10.5, "stage": "c"},
        {"event": "stage_end", "t": 20.0, "cpu_s": 10.7, "stage": "c", "rss_max_mb": 70.0, "records": 5,
         "arrivals": None, "dropped": 0, "no_free_user": 0, "inflight": 0, "drained": True,
         "worker_cpu_share_max": 0.97, **loop, "workers": 1},
        {"event": "stage_start", "t": 20.0, "cpu_s": 10.7, "stage": "old", "target": None},
        {"event": "stage_end", "t": 21.0, "cpu_s": 10.8, "stage": "old", "worker_cpu_share_max": 0.1},
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    measured, old = stage_windows(read_events(tmp_path))
    assert (measured.loop_delay_p50_s, measured.loop_delay_p99_s, measured.loop_delay_max_s) == (
        0.000412,
        0.041503,
        0.0625,
    )
    assert measured.to_dict() == {
        "label": "c", "start": 10.0, "cpu_start_s": 1.0, "target": events[0]["target"], "window_end": 20.0,
        "end": 20.0, "cpu_end_s": 10.7, "generator_rss_max_mb": 70.0, "records": 5, "arrivals": None,
        "dropped": 0, "no_free_user": 0, "inflight": 0, "drained": True, "worker_cpu_share_max": 0.97,
        "workers": 1, "generator_cpu_share": 0.97, **loop,
    }  # fmt: skip
    assert "loop_delay_p99_s" not in old.to_dict()  # the events of a version before the measurement
    assert (old.loop_delay_p50_s, old.loop_delay_p99_s, old.loop_delay_max_s) == (None, None, None)
    run = tmp_path / "run"
    run.mkdir()
    raw = manifest_dict(stage_labels=("c", "old"), stages=[measured.to_dict(), old.to_dict()])
    data = orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (run / "manifest.json").write_bytes(data)
    manifest = read_manifest(run)
    assert manifest.stages == (measured, old)
    assert manifest.to_json() == data


def test_a_manifest_from_before_the_loop_delay_reads_none_and_writes_back_the_same(tmp_path: Path) -> None:
    manifest = Manifest.from_json(FIXTURE.read_bytes(), FIXTURE)
    assert b"loop_delay" not in FIXTURE.read_bytes()
    assert manifest.stages is not None
    for stage in manifest.stages:
        assert (stage.loop_delay_p50_s, stage.loop_delay_p99_s, stage.loop_delay_max_s) == (None, None, None)
    assert manifest.to_json() == FIXTURE.read_bytes()


@pytest.mark.parametrize(("bad", "shown"), [("0.04", '"0.04"'), (True, "true"), ([0.04], "[0.04]")])
def test_a_loop_delay_of_the_wrong_type_is_refused_in_one_line(
    tmp_path: Path, bad: object, shown: str
) -> None:
    raw = manifest_dict(stages=[{"label": "s1", "loop_delay_p99_s": bad}])
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(raw))
    with pytest.raises(ConfigError) as caught:
        read_manifest(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'manifest.json'}: stages[0].loop_delay_p99_s must be a number, got {shown}"
    )


@pytest.mark.parametrize(("found", "shown"), [(99, "format 99"), ("2", 'format "2"'), (None, "no format")])
def test_an_unknown_format_is_refused_in_one_line(tmp_path: Path, found: object, shown: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_bytes(jsonl(records()))
    manifest = {k: v for k, v in manifest_dict(format=found).items() if v is not None}
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(ConfigError) as caught:
        load_run(run)
    assert str(caught.value) == (
        f"{run / 'manifest.json'}: {shown} is not a run-directory format this version reads (format 1 or 2)"
    )
    if found == 99:
        refused(run_cli("analyze", str(run)), 2, "manifest.json: format 99", "(format 1 or 2)")


def test_a_missing_or_broken_manifest_keeps_its_wording(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not a run directory \(no manifest.json\)$"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ConfigError, match=r"manifest.json is not valid JSON$"):
        read_manifest(tmp_path)
    assert FORMAT == 2


def test_the_spec_round_trips_exactly_with_a_retry_policy_and_a_sweep() -> None:
    raw = manifest_dict()["spec"]
    raw["retry"] = {"policy": "retry-after", "max_wait_s": 5.0, "max_retries": 2}
    raw["sweep"] = {
        "points": 4,
        "duration_s": 5.0,
        "max_concurrency": 64,
        "arrival": "gamma",
        "burstiness": 0.5,
    }
    raw["extra"] = {"scenario": "chat.toml", "description": "a chat"}
    spec = RunSpec.from_dict(raw)
    assert spec.retry == RetryPolicy("retry-after", 5.0, 2) and spec.sweep == SweepPlan(
        4, 5.0, 64, "gamma", 0.5
    )
    assert (spec.scenario_source, spec.description, spec.pool_size) == ("chat.toml", "a chat", 64)
    assert orjson.dumps(spec.to_public_dict()) == orjson.dumps(raw)


_ARROW_TYPES = {float: pa.float64(), int: pa.int64(), str: pa.string()}


def test_the_analysis_schema_is_the_record_contract() -> None:
    """Every RequestRecord field is a column of the loader's schema with the matching Arrow type, and the schema
    has nothing else but format 2's gap references: adding a field to one and not the other fails here."""
    hints = typing.get_type_hints(RequestRecord)
    expected = {}
    for f in fields(RequestRecord):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        base = typing.get_origin(args[0]) or args[0]
        if base is tuple:
            expected[f.name] = pa.list_(pa.float64())
        elif base is typing.Literal:
            expected[f.name] = pa.string()
        else:
            expected[f.name] = _ARROW_TYPES[base]
    expected.update(gap_offset=pa.int64(), gap_count=pa.int64())
    assert {field.name: field.type for field in RECORD_SCHEMA} == expected


def test_the_simulator_settings_have_one_definition() -> None:
    """The [simulator] keys, the `loadtest sim` options, SimConfig's defaults and plan's sizing keys all follow
    SimSettings."""
    options = {p.name: p for p in sim.params if isinstance(p, click.Option)}
    for name in SIM_KEYS:
        if name == "faults":
            assert {"faults", "stall_seconds"} <= set(options)  # --fault NAME=PROB, --stall-seconds
            continue
        option = options[name]
        assert option.opts == [flag_of(name)]
        assert (False if option.is_flag else option.default) == default(name)  # a switch is off unless given
        assert SimConfig.__dataclass_fields__[name].default == default(name)
    assert set(SIM_KEYS) <= set(SimConfig.__dataclass_fields__) | {"faults"}
    assert {
        "architecture", "gpu", "tp", "replicas", "max_batch", "mode", "chunks", "chunk_size",
        "min_provisioned_throughput", "max_provisioned_throughput",
    } == SIZING_KEYS  # fmt: skip
    settings = SimSettings(gpu="a100", chunks=2, faults={"http_503": 0.1, "stall_s": 3})
    assert settings.sim_args(7) == [
        "--seed", "7", "--gpu", "a100", "--chunks", "2", "--fault", "http_503=0.1", "--stall-seconds", "3",
    ]  # fmt: skip
    assert settings.sizing() == {"gpu": "a100", "chunks": 2}
    assert settings.describe() == "gpu=a100, chunks=2, faults={'http_503': 0.1, 'stall_s': 3}"


def test_manifest_is_frozen() -> None:
    manifest = Manifest.from_json(FIXTURE.read_bytes(), FIXTURE)
    with pytest.raises(AttributeError):
        manifest.status = "x"  # type: ignore[misc]


def test_a_flows_place_survives_the_line_the_columnar_copy_and_the_frame(tmp_path: Path) -> None:
    from dataclasses import replace

    from loadtest.client.records import dump_record, load_record

    base, other = records()[:2]
    step0 = replace(base, flow_id="w0/7", request_class="retrieve", step_index=0)
    step1 = replace(other, flow_id="w0/7", request_class="answer", step_index=1, cached_tokens=96)
    assert load_record(dump_record(step1)) == step1
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_bytes(orjson.dumps(manifest_dict()))
    (run / "records.jsonl").write_bytes(jsonl([step0, step1, records()[2]]))
    for _ in range(2):  # parsed from the JSON (writing the copy), then read from the copy
        df = load_run(run).records
        assert df["flow_id"].tolist()[:2] == ["w0/7", "w0/7"] and df["flow_id"].isna().tolist()[2]
        assert df["request_class"].astype(object).tolist()[:2] == ["retrieve", "answer"]
        assert df["cached_tokens"].tolist()[1] == 96 and df["cached_tokens"].isna().tolist()[0]
        assert df["step_index"].tolist()[:2] == [0, 1] and df["step_index"].isna().tolist()[2]
    assert (run / "records.cache.parquet").exists()
