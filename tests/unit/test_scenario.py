"""Scenario files: every shipped one is valid; mistakes get one clear line naming the field."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from loadtest.client.protocol import EndpointSpec
from loadtest.errors import ConfigError
from loadtest.spec.assemble import (
    SIM_DEMO_SLO,
    SIM_EXAMPLE_PEAK_TPM,
    Overrides,
    apply_overrides,
    scenario_from_flags,
)
from loadtest.spec.runspec import PlanRequest, RunSpec
from loadtest.spec.scenario import load_scenario, parse_scenario
from loadtest.spec.slo_flags import (
    Regression,
    parse_regressions,
    parse_slo_flags,
    parse_thresholds,
    slo_tables,
)
from loadtest.spec.workload import RequestFactory
from tests.helpers import ROOT

SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))


def test_the_shipped_set_is_complete() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"chat", "rag", "embeddings", "mix", "ppt-quota-probe", "pt-sizing-sweep", "cold-start"} <= names
    assert {"conversation", "rag-flow", "agent"} <= names  # Python scenarios: scenarios/flows/*.py


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
    assert find_shipped("conversation") == ROOT / "scenarios" / "conversation.toml"
    assert find_shipped("nope") is None


def test_shipped_python_scenarios_name_their_modules_and_steps() -> None:
    """Each runs a module shipped in scenarios/flows (package data, not a package: import-linter keeps gevent out of
    the scenarios package), with a flow SLO and each step it calls declared."""
    steps = {"conversation": {"turn"}, "rag-flow": {"embed", "answer"}, "agent": {"plan", "answer"}}
    for name, expected in steps.items():
        scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
        assert scenario.python is not None and scenario.python.slo
        assert Path(scenario.python.module).parent == ROOT / "scenarios" / "flows"
        assert {c.name for c in scenario.classes} == expected
    assert not (ROOT / "scenarios" / "flows" / "__init__.py").exists()


# what the report plans for, and the simulator demo's SLOs


def test_a_plan_table_is_read_and_checked() -> None:
    plan = parse_scenario(
        {"plan": {"peak_tpm": 1_800_000, "headroom": 0.3, "architectures": ["llama-3.3-70b"]}}
    ).plan
    assert plan == PlanRequest(
        peak_tokens_per_min=1_800_000.0, headroom=0.3, architectures=("llama-3.3-70b",)
    )
    assert parse_scenario({"plan": {"peak_rps": 40}}).plan == PlanRequest(peak_requests_per_s=40.0)
    shaped = parse_scenario({"plan": {"peak_rps": 40, "profile": "diurnal"}}).plan
    assert shaped == PlanRequest(peak_requests_per_s=40.0, profile="diurnal")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"peak_tpm": 1, "peak_rps": 1}, "give peak_tpm or peak_rps, not both"),
        ({"peak_tpm": 0}, "[plan].peak_tpm must be a positive number"),
        ({"headroom": -0.1}, "[plan].headroom must be a fraction ≥ 0"),
        ({"architectures": "llama-3.3-70b"}, "[plan].architectures must be a list"),
        ({"peak": 1}, "peak"),
        ({"profile": "weekly"}, "[plan].profile must be one of flat, business-hours, diurnal, got 'weekly'"),
    ],
)
def test_a_wrong_plan_table_is_one_line(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_scenario({"plan": table})


def test_the_simulator_demo_gets_slos_and_an_example_forecast() -> None:
    demo = scenario_from_flags(Overrides())
    assert demo.classes[0].slo == dict(SIM_DEMO_SLO)
    assert demo.plan == PlanRequest(peak_tokens_per_min=SIM_EXAMPLE_PEAK_TPM, example=True)
    assert [s.users for s in demo.stages] == [1, 4, 16, 64]
    mine = scenario_from_flags(Overrides(slos={None: {"ttft_p99": 2.0}}, peak_requests_per_s=5.0))
    assert mine.classes[0].slo == {"ttft_p99": 2.0}
    assert mine.plan == PlanRequest(peak_requests_per_s=5.0)
    shaped = scenario_from_flags(Overrides(peak_requests_per_s=5.0, profile="business-hours"))
    assert shaped.plan == PlanRequest(peak_requests_per_s=5.0, profile="business-hours")
    endpoint = scenario_from_flags(Overrides(endpoint="http://127.0.0.1:8000/v1"))
    assert endpoint.classes[0].slo == {} and endpoint.plan is None


def test_flags_override_a_scenarios_slos_and_forecast() -> None:
    scenario = parse_scenario(
        {
            "classes": [{"name": "a", "slo": {"ttft_p95": "1s", "tpot_p50": "50ms"}}],
            "plan": {"peak_tpm": 100, "architectures": ["llama-3.1-8b"]},
        }
    )
    assert scenario.plan is not None and not scenario.plan.example
    changed = apply_overrides(scenario, Overrides(slos={None: {"ttft_p95": 0.5}}, peak_tokens_per_min=900.0))
    assert changed.classes[0].slo == {"ttft_p95": 0.5, "tpot_p50": 0.05}
    assert changed.plan == PlanRequest(peak_tokens_per_min=900.0, architectures=("llama-3.1-8b",))
    # a simulator scenario without a forecast gets the example one; its own SLOs stay (none: none)
    bare = apply_overrides(parse_scenario({}), Overrides())
    assert bare.plan == PlanRequest(peak_tokens_per_min=SIM_EXAMPLE_PEAK_TPM, example=True)
    assert bare.classes[0].slo == {}


def test_a_plan_travels_in_the_spec_and_back() -> None:
    scenario = scenario_from_flags(Overrides(peak_tokens_per_min=1234.0))
    spec = scenario.run_spec(
        run_id="r",
        out_dir="o",
        endpoint=EndpointSpec(base_url="http://x/v1", model="m"),
        read_timeout_s=1.0,
        simulated=True,
    )
    assert RunSpec.from_dict(spec.to_public_dict()).plan == PlanRequest(peak_tokens_per_min=1234.0)
    no_plan = scenario_from_flags(Overrides(endpoint="http://x/v1")).run_spec(
        run_id="r",
        out_dir="o",
        endpoint=EndpointSpec(base_url="http://x/v1", model="m"),
        read_timeout_s=1.0,
        simulated=False,
    )
    assert "plan" not in no_plan.to_public_dict()  # older spec files have no such key: none is written


def test_an_unknown_architecture_in_the_plan_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"llama-9.*\[plan\]\.architectures|\[plan\]\.architectures.*llama-9"
    ):
        parse_scenario({"plan": {"peak_tpm": 1, "architectures": ["llama-9"]}})


def test_token_slos_never_reach_an_embeddings_class() -> None:
    with pytest.raises(ConfigError, match=r"classes\[0\]\.slo: an embeddings class produces no tokens"):
        parse_scenario({"classes": [{"kind": "embeddings", "slo": {"tpot_p50": "50ms"}}]})
    mix = load_scenario(ROOT / "scenarios" / "mix.toml")
    given = apply_overrides(mix, Overrides(slos={None: {"tpot_p50": 0.05, "ttft_p95": 1.0}}))
    slos = {c.name: c.slo for c in given.classes}
    assert slos["embed"] == {
        "e2e_p95": 0.5,
        "ttft_p95": 1.0,
    }  # --slo tpot_p50 applies where it means something
    assert slos["chat"]["tpot_p50"] == 0.05 and slos["rag"]["tpot_p50"] == 0.05
    embed = scenario_from_flags(Overrides(kind="embeddings", slos={None: {"tpot_p50": 0.05, "e2e_p95": 0.3}}))
    assert embed.classes[0].slo == {"e2e_p95": 0.3}


def test_slo_flags_read_the_threshold_form_scoped_or_not() -> None:
    assert parse_slo_flags(["ttft_p95<800ms", "tpot_p50 <= 40ms", "goodput>=95%", "chat:e2e_p99<2s"]) == {
        None: {"ttft_p95": 0.8, "tpot_p50": 0.04, "attainment": 0.95},
        "chat": {"e2e_p99": 2.0},
    }
    assert parse_slo_flags(["attainment>=0.9"]) == {None: {"attainment": 0.9}}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("ttft_p95=1s", "--slo takes [SCOPE:]METRIC<LIMIT"),
        ("ttft_p95>1s", "a latency SLO is a ceiling, write ttft_p95<1s"),
        ("goodput<95%", "goodput is a floor, write goodput>=95%"),
        ("tpot_p50<50", "give the limit a unit, e.g. tpot_p50<50ms"),
        ("speed_p95<1s", "unknown SLO 'speed_p95'"),
        ("goodput>=120%", "a share must be in (0, 100 %]"),
        ("goodput>=lots", "a share is a percentage or a fraction"),
    ],
)
def test_a_wrong_slo_flag_is_one_line(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_slo_flags([flag])


def test_gate_thresholds_read_error_rates_throughputs_and_stage_scopes() -> None:
    found = parse_thresholds(
        [
            "error_rate<1%",
            "output_tok_per_s>=1200",
            "req_per_s > 2.5/s",
            "concurrency@8:ttft_p95<1s",
            "goodput>=0.9",
        ]
    )
    assert [(t.scope, t.metric, t.limit, t.ceiling) for t in found] == [
        (None, "error_rate", 0.01, True),
        (None, "output_tok_per_s", 1200.0, False),
        (None, "req_per_s", 2.5, False),
        ("concurrency@8", "ttft_p95", 1.0, True),
        (None, "attainment", 0.9, False),
    ]
    # the run's SLO tables: latency and goodput only, a stage's scope left to the gate
    assert slo_tables(found, skip_scopes=["concurrency@8"]) == {None: {"attainment": 0.9}}
    assert parse_regressions(["tpot_p50:+10%", "chat:output_tok_per_s:-5%"]) == [
        Regression("tpot_p50:+10%", None, "tpot_p50", 0.10),
        Regression("chat:output_tok_per_s:-5%", "chat", "output_tok_per_s", -0.05),
    ]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("error_rate>1%", "error_rate is a ceiling, write error_rate<1%"),
        ("output_tok_per_s<1200", "a throughput is a floor, write output_tok_per_s>=1200"),
        ("output_tok_per_s>=fast", "a throughput is a number per second"),
        ("error_rate<-1%", "a share must be in [0, 100 %]"),
        ("tps>=5", "unknown SLO 'tps'"),
    ],
)
def test_a_wrong_gate_threshold_is_one_line(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_thresholds([flag])


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("tpot_p50+10%", "--max-regression takes [SCOPE:]METRIC:±N%"),
        ("tpot_p50:-10%", "a latency regresses when it grows, write e.g. tpot_p50:+10%"),
        ("output_tok_per_s:+10%", "a throughput regresses when it falls, write e.g. output_tok_per_s:-10%"),
        ("tpot_p50:+10", "the change is a signed percentage"),
        ("error_rate:+1%", "gate error_rate with --slo"),
        ("speed_p50:+1%", "unknown SLO 'speed_p50'"),
    ],
)
def test_a_wrong_regression_limit_is_one_line(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_regressions([flag])


def test_run_without_a_gate_refuses_the_gate_only_thresholds() -> None:
    with pytest.raises(ConfigError, match=re.escape("'error_rate<1%' is a gate threshold: add --gate")):
        parse_slo_flags(["error_rate<1%"])


def test_an_slo_flag_twice_or_for_an_unknown_class_is_refused() -> None:
    with pytest.raises(ConfigError, match="--slo ttft_p95 is given twice"):
        parse_slo_flags(["ttft_p95<1s", "ttft_p95<2s"])
    mix = load_scenario(ROOT / "scenarios" / "mix.toml")
    with pytest.raises(ConfigError, match=r"no request class 'chta' \(classes: chat, rag, embed\)"):
        apply_overrides(mix, Overrides(slos=parse_slo_flags(["chta:ttft_p95<1s"])))
    scoped = apply_overrides(mix, Overrides(slos=parse_slo_flags(["rag:ttft_p95<3s"])))
    assert {c.name: c.slo.get("ttft_p95") for c in scoped.classes} == {"chat": 1.0, "rag": 3.0, "embed": None}
