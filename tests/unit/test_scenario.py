"""Scenario files: every shipped one is valid; mistakes get one clear line naming the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from loadtest.client.protocol import EndpointSpec
from loadtest.errors import ConfigError
from loadtest.spec.assemble import Overrides, apply_overrides, scenario_from_flags
from loadtest.spec.scenario import load_scenario, parse_scenario
from loadtest.spec.workload import RequestFactory
from tests.helpers import ROOT

SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))


def test_the_shipped_set_is_complete() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"chat", "rag", "embeddings", "mix", "ppt-quota-probe", "pt-sizing-sweep"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenarios_are_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.stages and scenario.classes
    assert all(c.slo for c in scenario.classes), "every shipped class states its SLO"
    factory = RequestFactory(EndpointSpec(base_url="http://x/v1", model="m"), scenario.classes, scenario.seed)
    assert factory.make(1) == factory.make(1)  # the same seed sends the same requests


def parse(text: str) -> object:
    return parse_scenario(tomllib.loads(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('nmae = "x"', "unknown key 'nmae' (did you mean 'name'?)"),
        ("[load]\nrate = [1]\nconcurrency = [2]", "exactly one of stages"),
        ("[load]\nstages = [{rate = 1, concurrency = 2}]", "exactly one of concurrency, rate"),
        ("[load]\nstages = [{concurrency = 0}]", "load.stages[0].concurrency must be a positive number"),
        ('[load]\nstages = [{rate = 1, arrival = "weibull"}]', "arrival must be constant, poisson or gamma"),
        ('[load]\nduration = "forever"\nrate = [1]', "invalid duration"),
        ("[[classes]]\nprompt_tokens = -5", "classes[0].prompt_tokens must be ≥ 1"),
        ('[[classes]]\nkind = "images"', "classes[0].kind must be chat, completions or embeddings"),
        ('[[classes]]\nslo = {ttft_p101 = "1s"}', "unknown SLO 'ttft_p101'"),
        ('[[classes]]\ndataset = "nope.jsonl"', "does not exist"),
        ('[[classes]]\nname = "a"\n[[classes]]\nname = "a"', "class names must be unique"),
        ('[endpoint]\nmodel = "m"', "[endpoint] needs url"),
        ("[load]\nconcurrency = [4, 4]", "stage labels must be unique"),
        ('[load]\nramp = {kind = "rate", start = 5, stop = 1}', "stop must be ≥ start"),
    ],
)
def test_mistakes_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_ramp_expands() -> None:
    scenario = parse(
        '[load]\nduration = "5s"\nramp = {kind = "concurrency", start = 1, stop = 16, factor = 2}'
    )
    assert [s.label for s in scenario.stages] == [f"concurrency@{n}" for n in (1, 2, 4, 8, 16)]  # type: ignore[attr-defined]
    rates = parse('[load]\nramp = {kind = "rate", start = 1, stop = 4, steps = 4}')
    assert [s.rate for s in rates.stages] == [1.0, 2.0, 3.0, 4.0]  # type: ignore[attr-defined]


def test_token_stage_forms() -> None:
    scenario = parse(
        "[load]\nstages = [{tokens_per_min = 60000}, {input_tokens_per_min = 1000, "
        "output_tokens_per_min = 50}]"
    )
    labels = [s.label for s in scenario.stages]  # type: ignore[attr-defined]
    assert labels == ["tokens@60000tpm", "tokens@in1000+out50tpm"]


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="no scenario file"):
        load_scenario(tmp_path / "missing.toml")


def test_dataset_paths_resolve_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text(
        '{"prompt": "hello there", "output_tokens": 7}\n{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    path = tmp_path / "s.toml"
    path.write_text('[[classes]]\ndataset = "prompts.jsonl"\noutput_tokens = 9\nslo = {ttft_p95 = "1s"}\n')
    scenario = load_scenario(path)
    factory = RequestFactory(EndpointSpec(base_url="http://x/v1", model="m"), scenario.classes, 0)
    bodies = {factory.make(i).body for i in range(40)}
    assert any(b'"hello there"' in b and b'"max_tokens":7' in b for b in bodies)
    assert any(b'"content":"hi"' in b and b'"max_tokens":9' in b for b in bodies)


def test_flags_override_the_scenario() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "chat.toml")
    changed = apply_overrides(scenario, Overrides(duration_s=3.0, seed=9, endpoint="http://h/v1", model="m"))
    assert all(s.duration_s == 3.0 for s in changed.stages)
    assert changed.seed == 9 and changed.endpoint is not None and changed.endpoint.url == "http://h/v1"
    replaced = apply_overrides(scenario, Overrides(concurrency=(2, 3)))
    assert [s.label for s in replaced.stages] == ["concurrency@2", "concurrency@3"]
    with pytest.raises(ConfigError, match="only one of"):
        scenario_from_flags(Overrides(concurrency=(1,), rates=(2.0,)))


def test_weighted_mix_follows_weights() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "mix.toml")
    factory = RequestFactory(EndpointSpec(base_url="http://x/v1", model="m"), scenario.classes, 0)
    names = [factory.make(i).request_class for i in range(3000)]
    shares = {n: names.count(n) / len(names) for n in ("chat", "rag", "embed")}
    assert shares["chat"] == pytest.approx(0.6, abs=0.04)
    assert shares["rag"] == pytest.approx(0.3, abs=0.04)
    assert shares["embed"] == pytest.approx(0.1, abs=0.03)


def test_shipped_scenarios_are_found_by_name() -> None:
    from scenarios import find_shipped

    assert find_shipped("chat") == ROOT / "scenarios" / "chat.toml"
    assert find_shipped("scenarios/rag.toml") == ROOT / "scenarios" / "rag.toml"
    assert find_shipped("nope") is None
