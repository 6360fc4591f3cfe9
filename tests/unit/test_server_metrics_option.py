"""Where server metrics come from, as a scenario says it (``[load] server_metrics``) and as ``--server-metrics``
overrides it: parsed, checked in one line, and handed to the run."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from loadtest.cli.options import server_metrics
from loadtest.errors import ConfigError
from loadtest.spec.assemble import Overrides, apply_overrides, scenario_from_flags
from loadtest.spec.scenario import load_scenario, parse_scenario

URL = "http://127.0.0.1:9100/metrics"


def scenario_with(line: str) -> dict[str, Any]:
    return tomllib.loads(f"[load]\nconcurrency = [1]\n{line}")


@pytest.mark.parametrize(
    ("toml", "flag", "expected"),
    [
        ("", None, "auto"),
        ('server_metrics = "off"\n', None, "off"),
        ('server_metrics = " OFF "\n', None, "off"),
        (f'server_metrics = "{URL}"\n', None, URL),
        ('server_metrics = "off"\n', "auto", "auto"),  # the flag wins
        (f'server_metrics = "{URL}"\n', "off", "off"),
        ('server_metrics = "off"\n', "https://metrics.example/m", "https://metrics.example/m"),
        ("", "Off", "off"),
    ],
)
def test_the_scenario_says_where_and_the_flag_overrides_it(
    toml: str, flag: str | None, expected: str
) -> None:
    scenario = parse_scenario(scenario_with(toml))
    changed = apply_overrides(scenario, Overrides(server_metrics=server_metrics(flag, "--server-metrics")))
    assert changed.server_metrics == expected
    flags_only = scenario_from_flags(Overrides(server_metrics=server_metrics(flag, "--server-metrics")))
    assert flags_only.server_metrics == (expected if flag is not None else "auto")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('"metrics"', "'metrics'"),
        ('""', "''"),
        ("5", "5"),
        ("true", "True"),
        ('"ftp://host/metrics"', "'ftp://host/metrics'"),
        ('"http://"', "'http://'"),
        ('"htps://user:dapi-secret@host/metrics?token=dapi-secret"', "'htps://host/metrics'"),
    ],
)
def test_a_bad_scenario_value_is_one_line_naming_the_key(tmp_path: Path, value: str, shown: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f"[load]\nconcurrency = [1]\nserver_metrics = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message == f"s.toml: load.server_metrics must be an http(s) URL, 'auto' or 'off', got {shown}"
    assert "dapi-secret" not in message


def test_a_bad_flag_is_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"^--server-metrics must be an http\(s\) URL, 'auto' or 'off', got 'x'$"
    ):
        server_metrics("x", "--server-metrics")
    assert server_metrics(None, "--server-metrics") is None  # not given: the scenario's


class _Launched(Exception):
    pass


@pytest.mark.parametrize(("flag", "expected"), [((), "off"), (("--server-metrics", URL), URL)])
def test_loadtest_run_hands_the_chosen_value_to_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: tuple[str, ...], expected: str
) -> None:
    from loadtest.cli.group import cli

    seen: dict[str, Any] = {}

    def launch(scenario: object, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise _Launched

    monkeypatch.setattr("loadtest.runner.launch.launch", launch)
    path = tmp_path / "s.toml"
    path.write_text('[load]\nconcurrency = [1]\nduration = "1s"\nserver_metrics = "off"\n')
    with pytest.raises(_Launched):
        cli.main(["run", str(path), "--out", str(tmp_path / "runs"), *flag], standalone_mode=False)
    assert seen["server_metrics"] == expected
