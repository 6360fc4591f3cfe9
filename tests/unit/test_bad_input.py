"""Bad input is one line naming the problem and a non-zero exit (2: options and files, 98: a run with nothing to
analyse), never a traceback or an "internal error"."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest

from analysis import load_run
from analysis.frame import with_metrics
from analysis.prices import load_prices
from loadtest.cli.group import main
from loadtest.errors import ConfigError
from loadtest.sim.config import SimConfig
from tests.helpers import jsonl, manifest_dict, records, refused, run_cli, two_stage_run, write_run

MIX = ("--peak-tpm", "1000000", "--prompt-tokens", "1000", "--output-tokens", "100")


# 1. --gpu


def test_an_unknown_gpu_is_named_with_the_known_ones() -> None:
    refused(run_cli("plan", *MIX, "--gpu", "tpu"), 2, "unknown GPU 'tpu'", "a100, h100")


def test_the_gpu_is_case_insensitive() -> None:
    proc = run_cli("plan", *MIX, "--gpu", "A100", "--arch", "llama-3.1-8b", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (row,) = orjson.loads(proc.stdout)["plans"]
    assert row["deployment"] == "llama-3.1-8b@a100x1-fp16"


# 2. price tables


_M = '[models."llama-3.1-8b"]'


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[models.default]\nitpm = 0\n", 'itpm must be a positive integer (or "none"), got 0'),
        ('[models.default]\nitpm = "x"\n', "itpm must be a positive integer (or \"none\"), got 'x'"),
        ("[models.default]\nqph = 1.5\n", 'qph must be a positive integer (or "none"), got 1.5'),
        ("[models.default]\nqps = true\n", "qps must be a positive integer"),
        (f'{_M}\ndbu_per_chunk_hour = "24"\n', "dbu_per_chunk_hour must be a number ≥ 0"),
        ("[models.default]\nppt_input_per_million = -0.5\n", "ppt_input_per_million must be a number ≥ 0"),
        (f"{_M}\ndbu_per_chunk_hour = nan\n", "dbu_per_chunk_hour must be a number ≥ 0"),
        (f'{_M}\nthroughput_chunk_size = "970"\n', "throughput_chunk_size must be a number > 0"),
        (f"{_M}\nthroughput_chunk_size = -970\n", "throughput_chunk_size must be a number > 0"),
        (f"{_M}\nthroughput_chunk_size = 0\n", "throughput_chunk_size must be a number > 0"),
        (
            '[models."llama-4-maverick"]\nmodel_unit_tokens_per_s = 0\n',
            "model_unit_tokens_per_s must be a number > 0",
        ),
        ('[models."llama-3.1-8bb"]\nqph = 10\n', "(did you mean 'llama-3.1-8b'?); known: default, bge-large"),
        ('[models."gpt-9"]\nqph = 10\n', "unknown architecture 'gpt-9' for"),
        (f"{_M}\ndbu_per_chunk_hr = 1\n", "did you mean 'dbu_per_chunk_hour'?"),
        ("[model.default]\nqph = 10\n", "unknown key 'model' (did you mean 'models'?)"),
        ("label = 5\n", "label must be a string, got 5"),
    ],
)
def test_price_table_values_are_checked(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as caught:
        load_prices(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_valid_edge_values_still_load(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'label = "mine"\n[models."llama-3.1-8b"]\ndbu_per_chunk_hour = 0\nthroughput_chunk_size = 12.5\n'
    )
    book = load_prices(path)
    assert book.label == "mine" and book.get("llama-3.1-8b").throughput_chunk_size == 12.5


def test_a_model_name_typo_in_the_price_table_is_an_error_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[models."llama-3.1-8bb"]\ndbu_per_chunk_hour = 1.0\n')
    proc = run_cli("plan", *MIX, "--arch", "llama-3.1-8b", "--prices", str(path))
    refused(proc, 2, '[models."llama-3.1-8bb"]', "did you mean 'llama-3.1-8b'?")


# 3. requests longer than the model's context or KV cache


def test_a_request_longer_than_a_chosen_models_context_is_an_error() -> None:
    proc = run_cli(
        "plan",
        "--peak-tpm",
        "1e6",
        "--prompt-tokens",
        "200000",
        "--output-tokens",
        "100",
        "--arch",
        "llama-3.1-8b",
    )
    refused(proc, 2, "llama-3.1-8b", "200100", "131072-token context")


def test_max_tokens_counts_against_the_context() -> None:
    proc = run_cli("plan", *MIX, "--max-tokens", "4000", "--arch", "mpt-7b")
    refused(proc, 2, "mpt-7b", "1000 input + 4000 output tokens (5000)", "2048-token context")


def test_default_candidates_with_a_short_context_are_left_out_with_a_note() -> None:
    proc = run_cli(
        "plan", "--peak-tpm", "1e6", "--prompt-tokens", "3000", "--output-tokens", "250", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    archs = [p["architecture"] for p in orjson.loads(proc.stdout)["plans"]]
    assert "mpt-7b" not in archs and "llama-3.1-8b" in archs  # MPT 7B reads 2,048 tokens at most
    assert "note: left out" in proc.stderr and "mpt-7b (2048)" in proc.stderr
    none = run_cli("plan", "--peak-tpm", "1e6", "--prompt-tokens", "2000000", "--output-tokens", "100")
    refused(none, 2, "no decoder model in the catalog has a context of 2000100 tokens")


def test_a_request_the_kv_cache_cannot_hold_names_the_architecture(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no catalog model runs out of KV cache within its context on the catalog GPUs: shrink the cache instead
    monkeypatch.setattr("loadtest.model.predict.kv_capacity_tokens", lambda dep: 1000)
    assert main(["plan", *MIX, "--arch", "llama-3.1-8b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loadtest: error: llama-3.1-8b on h100: ") and "does not fit the KV cache" in err


# 4. --max-tokens and --tpot against the output length


def test_max_tokens_below_the_output_length_is_an_error() -> None:
    proc = run_cli("plan", *MIX, "--max-tokens", "10", "--arch", "llama-3.1-8b")
    refused(proc, 2, "--max-tokens 10 is below the 100 output tokens", "max_tokens")


def test_tpot_with_no_output_is_an_error() -> None:
    proc = run_cli(
        "plan", "--peak-tpm", "1e6", "--prompt-tokens", "100", "--output-tokens", "0", "--tpot", "50ms"
    )
    refused(proc, 2, "--tpot", "embeddings produce no tokens")


# 5. --run-arch / --run-band against a simulator run


def test_a_simulator_run_refuses_a_contradicting_architecture_or_band(tmp_path: Path) -> None:
    run = str(two_stage_run(tmp_path, {"architecture": "llama-3.1-8b", "chunks": 2}))
    arch = run_cli("plan", "--run", run, "--peak-tpm", "1e6", "--run-arch", "llama-3.3-70b")
    refused(arch, 2, "simulated llama-3.1-8b, not llama-3.3-70b", "already knows its architecture and band")
    band = run_cli("plan", "--run", run, "--peak-tpm", "1e6", "--run-band", "5000")
    refused(band, 2, "not 5000", "already knows its architecture and band", "--run-band")
    chunk = SimConfig(architecture="llama-3.1-8b").throughput_chunk_size
    same = run_cli(
        "plan", "--run", run, "--peak-tpm", "1e6", "--run-arch", "llama-3.1-8b", "--run-band", str(2 * chunk),
        "--arch", "llama-3.1-8b",
    )  # fmt: skip
    assert same.returncode == 0, same.stderr  # repeating what the run knows is fine


# 6. manifests of the wrong shape


def _run_with_manifest(tmp_path: Path, changes: dict[str, Any]) -> Path:
    """A run whose manifest is a complete one with ``changes`` (``None``: the key left out)."""
    run = write_run(tmp_path, jsonl(records()))
    manifest = {k: v for k, v in {**manifest_dict(), **changes}.items() if v is not None}
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    return run


def _spec(**changes: Any) -> dict[str, Any]:
    return {**manifest_dict()["spec"], **changes}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"spec": "x"}, 'spec must be an object, got "x"'),
        ({"stages": 5}, "stages must be a list, got 5"),
        ({"spec": _spec(stages=[1, 2])}, "spec.stages[0] must be an object, got 1"),
        ({"stages": [{"label": 3}]}, "stages[0].label must be a string, got 3"),
        ({"stages": [{"label": "s1", "target": "x"}]}, "stages[0].target must be an object"),
        ({"spec": _spec(request_classes="chat")}, 'spec.request_classes must be a list, got "chat"'),
        ({"spec": _spec(request_classes=["chat"])}, "spec.request_classes[0] must be an object"),
        (
            {"spec": _spec(request_classes=[{"name": "chat", "slo": {"ttft_p95": "1s"}}])},
            'spec.request_classes[0].slo.ttft_p95 must be a number, got "1s"',
        ),
        ({"spec": _spec(request_classes=[{"name": "chat", "slo": "fast"}])}, "slo must be an object"),
        ({"target": "x"}, 'target must be an object, got "x"'),
        ({"target": {"simulator": 5}}, "target.simulator must be an object, got 5"),
        ({"status": None}, "status is missing"),
        ({"seed": "0"}, 'seed must be an integer, got "0"'),
        ({"spec": _spec(endpoint={"model": "m"})}, "spec is not a run spec"),
        ({"stages": [{"label": "s1", "drained": 1}]}, "stages[0].drained must be true or false, got 1"),
    ],
)
def test_a_manifest_of_the_wrong_shape_names_the_field(
    tmp_path: Path, manifest: dict[str, Any], message: str
) -> None:
    run = _run_with_manifest(tmp_path, manifest)
    with pytest.raises(ConfigError) as caught:
        load_run(run)
    assert message in str(caught.value) and "manifest.json" in str(caught.value)


@pytest.mark.parametrize("command", ["analyze", "plan"])
def test_a_manifest_of_the_wrong_shape_on_the_command_line(tmp_path: Path, command: str) -> None:
    run = str(_run_with_manifest(tmp_path, {"spec": _spec(request_classes="chat")}))
    args = ["analyze", run] if command == "analyze" else ["plan", "--run", run, "--peak-tpm", "1e6"]
    refused(run_cli(*args), 2, "manifest.json: spec.request_classes must be a list")


# 7. records without a stage or with a wrongly typed field


def test_records_without_a_stage_are_left_out_and_counted(tmp_path: Path) -> None:
    lines = jsonl(records()) + b'{"stage": null, "run_id": "r1", "started_at": 1.0}\n{}\n'
    data = load_run(write_run(tmp_path, lines))
    assert len(data.records) == 8 and data.skipped_lines == 2
    assert data.records["stage"].notna().all()


def test_a_wrongly_typed_field_skips_its_line(tmp_path: Path) -> None:
    bad = [b'{"stage": "s1", "started_at": "x"}\n', b'{"stage": 5}\n', b'{"stage": "s1", "seq": 1.5}\n']
    bad += [b'{"stage": "s1", "chunk_gaps": ["a"]}\n', b'{"stage": "s1", "output_tokens": {"n": 1}}\n']
    good = jsonl(records()).splitlines(keepends=True)
    data = load_run(write_run(tmp_path, b"".join(good[:2] + bad + good[2:])))
    assert len(data.records) == 8 and data.skipped_lines == len(bad)
    expected = load_run(write_run(tmp_path / "clean", b"".join(good))).records
    assert data.records["ttft"].tolist() == pytest.approx(expected["ttft"].tolist(), nan_ok=True)


def test_analyze_survives_stageless_and_mistyped_records(tmp_path: Path) -> None:
    lines = jsonl(records()) + b'{"stage": null}\n{"stage": "s1", "ended_at": "late"}\n'
    proc = run_cli("analyze", str(write_run(tmp_path, lines)))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert "note: 2 record line(s) skipped" in proc.stderr


# 8. a run with no records; the CSV header


@pytest.mark.parametrize("content", [b"", None, b"{}\n"])
def test_a_run_without_records_is_an_invalid_run(tmp_path: Path, content: bytes | None) -> None:
    run = write_run(tmp_path, content or b"")
    if content is None:
        (run / "records.jsonl").unlink()
    refused(run_cli("analyze", str(run), "--format", "csv"), 98, f"invalid run: {run} has no records")


def test_plan_refuses_a_run_without_records_too(tmp_path: Path) -> None:
    run = write_run(tmp_path, b"")
    refused(run_cli("plan", "--run", str(run), "--peak-tpm", "1e6"), 98, "invalid run", "has no records")


def test_records_without_a_class_are_grouped_not_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classless = jsonl(records()).replace(b'"request_class":"chat"', b'"request_class":null')
    classless = classless.replace(b'"request_class":"batch"', b'"request_class":null')
    run = write_run(tmp_path, classless)
    assert main(["analyze", str(run), "--format", "csv", "--by", "class"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.startswith("stage,request_class,requests,ok,")
    assert [r.split(",")[1] for r in rows] == ["(unnamed)"] and int(rows[0].split(",")[2]) == len(records())


# 9. records missing timestamps: numpy warnings


def test_with_metrics_warns_nothing_on_missing_timestamps() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "error_class": [None, None],
            "first_token_at": [float("nan"), 1.0],
            "started_at": [float("nan"), float("nan")],
            "scheduled_at": [float("nan"), 0.0],
            "ended_at": [float("nan"), 2.0],
            "output_tokens": pd.array([1, None], dtype="Int64"),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = with_metrics(frame)
    assert out["tpot"].isna().all() and out["ttft"].isna().all()


def test_analyze_prints_no_numpy_warning_for_records_without_timestamps(tmp_path: Path) -> None:
    run = write_run(tmp_path, b'{"stage": "s1", "run_id": "r1", "seq": 1}\n{"stage": "s1", "seq": 2}\n')
    proc = run_cli("analyze", str(run))
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr


@pytest.mark.parametrize(
    ("plan", "named"),
    [
        ({"peak_tokens_per_min": "abc"}, "plan.peak_tokens_per_min must be a number"),
        ({"architectures": "llama"}, "plan.architectures must be a list of names"),
        ({"peak": 1}, "plan:"),
    ],
)
def test_a_manifest_with_a_wrong_plan_is_one_line(tmp_path: Path, plan: dict[str, Any], named: str) -> None:
    run = write_run(tmp_path, jsonl(records()))
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["spec"]["plan"] = plan
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    refused(run_cli("report", str(run)), 2, named)
