"""Prompt lengths exact in the server's tokens, end to end on the simulator: one whose tokenizer and chat template
disagree with one word per token (1.25 tokens a word, a 30-token template) is calibrated by the preflight so that
it counts what was asked; ``--tokenizer`` (a tokenizer trained in the test) measures only the template; the
calibration is in the manifest, asked and served in every record, and analyze says how far apart they are."""

from __future__ import annotations

import json
from pathlib import Path

from analysis import load_run
from tests.helpers import only_run_dir, refused, run_cli
from tests.unit.test_prompts import train_tokenizer

SCENARIO = """
name = "exact"
[simulator]
tokens_per_word = 1.25
template_tokens = 30
[[classes]]
name = "chat"
prompt_tokens = 256
output_tokens = 2
[[classes]]
name = "comp"
kind = "completions"
prompt_tokens = 200
output_tokens = 2
[load]
duration = "3s"
max_requests = 30
concurrency = [2]
"""


def test_calibration_makes_the_simulator_count_what_was_asked(tmp_path: Path) -> None:
    scenario = tmp_path / "exact.toml"
    scenario.write_text(SCENARIO)
    proc = run_cli("run", str(scenario), "--out", str(tmp_path / "runs"), "-q")
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path / "runs")
    data = load_run(run)
    fits = {f.kind: f for f in data.manifest.spec.prompts.fits}  # type: ignore[union-attr]
    assert (fits["chat"].tokens_per_word, fits["chat"].overhead, fits["chat"].check) == (
        1.25,
        30.0,
        (256, 256),
    )
    assert (fits["completions"].tokens_per_word, fits["completions"].overhead) == (1.25, 0.0)
    df = data.records
    assert len(df) == 30 and df["ok"].all()
    assert (df["asked_prompt_tokens"] == df["request_class"].map({"chat": 256, "comp": 200})).all()
    assert (df["prompt_tokens"] == df["asked_prompt_tokens"]).all()
    out = run_cli("analyze", str(run), "--format", "json")
    lengths = json.loads(out.stdout)["input_length"]
    assert {(g["scope"], g["name"]): g["deviation"] for g in lengths["groups"]} == {
        ("class", "chat"): 0.0,
        ("class", "comp"): 0.0,
        ("stage", "concurrency@2"): 0.0,
    }
    assert lengths["calibration"]["fits"][0]["probes"] == [[16, 50], [256, 350]]

    # the same server, uncalibrated: the +25 % (completions) and the template show, flagged
    proc = run_cli("run", str(scenario), "--out", str(tmp_path / "off"), "-q", "--no-calibrate")
    assert proc.returncode == 0, proc.stderr
    off = run_cli("analyze", str(only_run_dir(tmp_path / "off")))
    assert "class comp" in off.stdout and "+25.0%" in off.stdout and "beyond ±5%" in off.stdout
    assert "! input length: served input length off the asked by more than ±5%" in off.stdout


def test_tokenizer_words_and_the_measured_template(tmp_path: Path) -> None:
    """The scenario's ``[prompts] tokenizer`` (relative to the scenario): the words are its one-token words, the
    simulator counts them one token each, and the probes measure the 30-token template."""
    train_tokenizer(tmp_path)
    scenario = tmp_path / "tok.toml"
    scenario.write_text(
        'name = "tok"\n[prompts]\ntokenizer = "tokenizer.json"\n[simulator]\ntemplate_tokens = 30\n'
        "[[classes]]\nprompt_tokens = 300\noutput_tokens = 2\n[load]\nmax_requests = 5\nconcurrency = [1]\n"
        'duration = "3s"\n'
    )
    proc = run_cli("run", str(scenario), "--out", str(tmp_path / "runs"), "-q")
    assert proc.returncode == 0, proc.stderr
    data = load_run(only_run_dir(tmp_path / "runs"))
    prompts = data.manifest.spec.prompts
    assert prompts is not None and prompts.tokenizer_file == str(tmp_path / "tokenizer.json")
    assert prompts.words and len(prompts.words) < 100
    assert (prompts.fits[0].how, prompts.fits[0].overhead, prompts.fits[0].check) == (
        "tokenizer",
        30.0,
        (300, 300),
    )
    assert (data.records["prompt_tokens"] == 300).all() and len(data.records) == 5
    refused(
        run_cli("run", "--tokenizer", "Nobody/NoSuchModel", "--out", str(tmp_path / "x")),
        2,
        "--tokenizer Nobody/NoSuchModel: not a tokenizer.json file",
        "nothing is downloaded",
    )
    assert not (tmp_path / "x").exists()
