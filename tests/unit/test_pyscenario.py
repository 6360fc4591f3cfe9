"""A Python scenario's spec: the ``[python]`` table, ``loadtest run my_flow.py``'s flags, steps and their SLOs, and
the module travelling in the spec. The module is compiled here, never imported (the engine alone runs it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from analysis.flows import flow_slo_limits
from loadtest.errors import ConfigError
from loadtest.spec.assemble import Overrides, apply_overrides, python_from_flags, scenario_from_flags
from loadtest.spec.pyscenario import (
    DEFAULT_FLOW_TOKENS,
    PythonScenario,
    flow_latency_percentile,
    read_module,
    scenario_failure,
)
from loadtest.spec.runspec import RunSpec
from loadtest.spec.scenario import load_scenario
from loadtest.spec.slo_flags import flow_slo_of, is_flow, parse_slo_flags, parse_thresholds

MODULE = (
    "from loadtest.flows import FlowUser, task\n"
    "\n\nclass U(FlowUser):\n    @task\n    def t(self):\n        pass\n"
)


def write(tmp_path: Path, toml: str, module: str = MODULE) -> Path:
    (tmp_path / "flow.py").write_text(module)
    path = tmp_path / "s.toml"
    path.write_text(toml)
    return path


def test_a_python_table_reads_the_module_next_to_the_toml_and_its_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[python]\nmodule = "flow.py"\nusers = ["U"]\nslo = {flow_e2e_p95 = "10s", attainment = 0.9}\n'
        "flow_tokens = [3000, 500]\n"
        '[[classes]]\nname = "turn"\nslo = {ttft_p95 = "800ms"}\n'
        '[[classes]]\nname = "embed"\nkind = "embeddings"\n',
    )
    scenario = load_scenario(path)
    python = scenario.python
    assert python is not None
    assert python.module == str(tmp_path / "flow.py") and python.source == MODULE
    assert python.users == ("U",) and python.slo == {"flow_e2e_p95": 10.0, "attainment": 0.9}
    assert python.flow_tokens == (3000.0, 500.0)
    assert [(c.name, c.kind, c.stream, c.slo) for c in scenario.classes] == [
        ("turn", "chat", True, {"ttft_p95": 0.8}),
        ("embed", "embeddings", False, {}),
    ]
    assert not any(m.startswith("loadtest_scenario") for m in sys.modules)  # compiled, never imported


def test_the_module_travels_in_the_spec_and_back(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, '[python]\nmodule = "flow.py"\nslo = {flow_e2e_p95 = "2s"}\n'))
    from loadtest.client.protocol import EndpointSpec

    spec = scenario.run_spec(
        run_id="r",
        out_dir="o",
        endpoint=EndpointSpec(base_url="http://x/v1", model="m"),
        read_timeout_s=10.0,
        simulated=True,
    )
    assert spec.request_classes == ()
    back = RunSpec.from_dict(spec.to_public_dict())
    assert back.python == PythonScenario(
        module=str(tmp_path / "flow.py"),
        source=MODULE,
        slo={"flow_e2e_p95": 2.0},
        flow_tokens=DEFAULT_FLOW_TOKENS,
    )
    assert "python" not in RunSpec.from_dict({**spec.to_public_dict(), "python": None}).to_public_dict()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[python]\n", "[python].module must name a Python file"),
        ('[python]\nmodule = "nope.py"\n', "no Python scenario at"),
        ('[python]\nmodule = "flow.py"\nuser = ["U"]\n', "unknown key 'user' (did you mean 'users'?)"),
        (
            '[python]\nmodule = "flow.py"\nusers = ["not a name"]\n',
            "[python].users must be a list of class names",
        ),
        ('[python]\nmodule = "flow.py"\nslo = {e2e_p95 = "1s"}\n', "unknown flow SLO 'e2e_p95'"),
        ('[python]\nmodule = "flow.py"\nflow_tokens = [1]\n', "flow_tokens must be [input, output]"),
        (
            '[python]\nmodule = "flow.py"\n[[classes]]\nname = "turn"\nprompt_tokens = 100\n',
            "classes[0]: unknown key 'prompt_tokens'",
        ),
        (
            '[python]\nmodule = "flow.py"\n[[classes]]\nname = "e"\nkind = "embeddings"\nslo = {tpot_p50 = "1s"}\n',
            "an embeddings step produces no tokens",
        ),
    ],
)
def test_mistakes_in_the_python_table_are_one_line(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario(write(tmp_path, toml))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_syntax_error_is_one_line_with_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("from loadtest.flows import task\n\n\ndef f(:\n    pass\n")
    with pytest.raises(ConfigError) as err:
        read_module(path)
    assert str(err.value).startswith("broken.py:4: SyntaxError: ")
    assert "\n" not in str(err.value)


def test_run_my_flow_py_takes_the_flags_and_declares_steps_from_scoped_slos(tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(MODULE)
    ov = Overrides(concurrency=(2,), duration_s=3.0, slos=parse_slo_flags(("turn:ttft_p95<1s",)))
    scenario = python_from_flags(path, ov)
    assert scenario.name == "flow" and scenario.python is not None and scenario.python.source == MODULE
    assert [(s.kind, s.users, s.duration_s) for s in scenario.stages] == [("concurrency", 2, 3.0)]
    assert [(c.name, c.kind, c.slo) for c in scenario.classes] == [("turn", "chat", {"ttft_p95": 1.0})]
    # the simulator demo's example forecast, as any run from flags
    assert scenario.plan is not None and scenario.plan.example
    with pytest.raises(ConfigError, match="SLOs name a step"):
        python_from_flags(path, Overrides(slos=parse_slo_flags(("ttft_p95<1s",))))
    with pytest.raises(ConfigError, match="--prompt-tokens, --max-tokens: a Python scenario's module says"):
        python_from_flags(path, Overrides(prompt_tokens=10, max_tokens=5))


def test_flags_on_a_python_toml_apply_to_its_declared_steps(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, '[python]\nmodule = "flow.py"\n[[classes]]\nname = "turn"\n'))
    changed = apply_overrides(scenario, Overrides(slos=parse_slo_flags(("e2e_p95<2s", "plan:ttft_p95<1s"))))
    assert [(c.name, c.slo) for c in changed.classes] == [
        ("turn", {"e2e_p95": 2.0}),
        ("plan", {"e2e_p95": 2.0, "ttft_p95": 1.0}),
    ]
    with pytest.raises(ConfigError, match="--stream/--no-stream"):
        apply_overrides(scenario, Overrides(stream=False))


def test_a_toml_scenario_named_py_is_pointed_to_the_python_form(tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(MODULE)
    with pytest.raises(ConfigError, match="is a Python scenario: loadtest run"):
        load_scenario(path)


def test_the_engines_line_about_a_module_it_could_not_load_is_found(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("engine: something\nscenario: flow.py:3: NameError: name 'x' is not defined\n")
    assert scenario_failure(log) == "flow.py:3: NameError: name 'x' is not defined"
    log.write_text("Traceback (most recent call last):\n")
    assert scenario_failure(log) is None
    assert scenario_failure(tmp_path / "missing.log") is None


def test_an_unscoped_flow_slo_flag_is_the_runs_flow_slo(tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(MODULE)
    flags = ("flow_e2e_p95<8s", "flow_attainment>=80%", "turn:ttft_p95<1s")
    ov = Overrides(slos=parse_slo_flags(flags), flow_slo=flow_slo_of(parse_thresholds(flags)))
    scenario = python_from_flags(path, ov)
    assert scenario.python is not None and scenario.python.slo == {"flow_e2e_p95": 8.0, "attainment": 0.8}
    assert [(c.name, c.slo) for c in scenario.classes] == [("turn", {"ttft_p95": 1.0})]
    # over a TOML's own flow SLO, the flag wins for its metric
    toml = load_scenario(
        write(tmp_path, '[python]\nmodule = "flow.py"\nslo = {flow_e2e_p95 = "20s", flow_e2e_p50 = "5s"}\n')
    )
    changed = apply_overrides(toml, Overrides(flow_slo={"flow_e2e_p95": 8.0}))
    assert changed.python is not None and changed.python.slo == {"flow_e2e_p95": 8.0, "flow_e2e_p50": 5.0}
    # a gate's other flow thresholds, or a stage-scoped one, are refused without --gate
    for flag in ("flow_error_rate<5%", "s1:flow_e2e_p95<8s"):
        with pytest.raises(ConfigError, match="is a gate threshold: add --gate"):
            parse_slo_flags((flag,))
    # and a run without a Python scenario has no flow SLO to set
    with pytest.raises(ConfigError, match="a flow SLO is a Python scenario's"):
        scenario_from_flags(Overrides(flow_slo={"flow_e2e_p95": 8.0}))


@pytest.mark.parametrize(
    ("key", "q"),
    [
        ("flow_e2e_p95", 95.0),
        ("flow_e2e_p99.9", 99.9),
        ("flow_e2e_p100", None),
        ("flow_e2e_p0", None),
        ("flow_e2e_p1e1", None),
        ("flow_e2e_pnan", None),
        ("e2e_p95", None),
        ("attainment", None),
    ],
)
def test_one_parser_for_the_flow_latency_keys(key: str, q: float | None) -> None:
    assert flow_latency_percentile(key) == q
    # the TOML's [python] slo, --slo and the flow analysis all read a key through it
    assert is_flow(key) == (q is not None)
    assert [k for k, _, _ in flow_slo_limits({key: 1.0})] == ([key] if q is not None else [])
