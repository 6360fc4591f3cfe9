"""``--processes N|auto`` (loadtest/spec/processes.py): the rule with injected CPU counts, cgroup quotas, the one
parsing rule, bad values refused in one line, and what the manifest records."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import orjson
import pytest

from loadtest.cli.group import main
from loadtest.rundir import Host, Manifest, RunDistribution, read_manifest
from loadtest.spec.processes import (
    auto_processes,
    cgroup_quota_cpus,
    describe_auto,
    parse_processes,
    spare_cores,
    usable_cpus,
)
from tests.helpers import manifest_dict


@pytest.mark.parametrize(
    ("usable", "simulator", "spare", "auto"),
    [
        (1, False, 0, 1),
        (1, True, 0, 1),
        (2, False, 1, 1),
        (2, True, 0, 1),  # the project's machine with the simulator: one process, none to spare
        (3, True, 1, 1),
        (4, True, 2, 2),
        (4, False, 3, 3),
        (8, False, 7, 7),
        (64, True, 62, 62),
    ],
)
def test_auto_starts_one_worker_per_core_to_spare_and_at_least_one(
    usable: int, simulator: bool, spare: int, auto: int
) -> None:
    assert spare_cores(usable, simulator) == spare
    assert auto_processes(usable, simulator) == auto


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("auto", "auto"), ("AUTO", "auto"), (" Auto ", "auto"), ("4", 4), (" 2 ", 2), (1, 1)],
)
def test_processes_are_a_whole_number_or_auto(value: object, parsed: object) -> None:
    assert parse_processes(value) == parsed


@pytest.mark.parametrize("value", ["0", 0, "-1", "abc", "1.5", "", "2 4", True, None, 2.0])
def test_anything_else_is_refused_naming_the_value(value: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a whole number") as err:
        parse_processes(value)
    assert str(err.value) == f"expected a whole number ≥ 1 or 'auto', got {value!r}"


@pytest.mark.parametrize(
    ("cpu_max", "quota", "period", "cpus"),
    [
        ("max 100000", None, None, None),  # v2, no quota
        ("200000 100000", None, None, 2),
        ("150000 100000", None, None, 1),  # 1.5 CPUs: rounded down
        ("50000 100000", None, None, 1),  # half a CPU: still one
        ("400000", None, None, 4),  # no period given: the kernel's default 100 ms
        ("garbage here", None, None, None),
        (None, "-1", "100000", None),  # v1, no quota
        (None, "300000", "100000", 3),
        (None, "300000", "0", None),
        (None, None, None, None),
        ("200000 100000", "800000", "100000", 2),  # v2 wins where both are mounted
    ],
)
def test_a_cgroup_quota_counts_in_whole_cpus(
    cpu_max: str | None, quota: str | None, period: str | None, cpus: int | None
) -> None:
    assert cgroup_quota_cpus(cpu_max, quota, period) == cpus


def test_usable_cpus_are_the_affinity_less_a_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert usable_cpus(tmp_path) == 8  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("300000 100000\n")
    assert usable_cpus(tmp_path) == 3
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == 8
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})  # taskset -c 3
    assert usable_cpus(tmp_path) == 1


def test_the_start_line_says_how_auto_counted() -> None:
    assert (
        describe_auto(4, True)
        == "--processes auto: 4 usable CPUs, less 1 for the CLI and 1 for the simulator"
    )
    assert describe_auto(1, False) == "--processes auto: 1 usable CPU, less 1 for the CLI"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--processes", "0"],
            "Invalid value for '--processes': expected a whole number ≥ 1 or 'auto', got '0'",
        ),
        (["--processes", "abc"], "expected a whole number ≥ 1 or 'auto', got 'abc'"),
        (
            ["--processes", "auto", "--expect-workers", "2", "--master-port", "5557"],
            "--processes auto starts workers on this machine, --expect-workers waits for workers on others: "
            "give one of them",
        ),
    ],
)
def test_a_bad_processes_value_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loadtest: error: ") and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.iterdir())  # refused before anything started


@pytest.mark.parametrize(
    ("args", "processes"), [([], 6), (["--endpoint", "http://127.0.0.1:9/v1", "--model", "m"], 7)]
)
def test_auto_hands_the_run_one_process_per_core_to_spare(
    args: list[str], processes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 usable CPUs: 6 workers beside the CLI and the embedded simulator, 7 against an endpoint elsewhere."""
    from loadtest.errors import ConfigError
    from loadtest.runner import launch
    from loadtest.runner.run import Distribution

    handed: list[Distribution] = []

    def fake_launch(*_args: object, distribution: Distribution, **_kwargs: object) -> None:
        handed.append(distribution)
        raise ConfigError("stopped before the run")

    monkeypatch.setattr("loadtest.spec.processes.usable_cpus", lambda: 8)
    monkeypatch.setattr(launch, "launch", fake_launch)
    assert main(["run", "--processes", "auto", *args, "--out", str(tmp_path)]) == 2
    assert handed == [Distribution(processes=processes, auto=True)]


def test_the_manifest_records_the_usable_cpus_and_an_automatic_count(tmp_path: Path) -> None:
    raw = manifest_dict()
    plain = orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    manifest = Manifest.from_json(plain, tmp_path / "manifest.json")
    assert manifest.host.usable_cpus is None and manifest.distribution.auto is False
    assert (
        manifest.to_json() == plain
    )  # neither key written when unknown / not auto: older runs read back the same
    chosen = dataclasses.replace(
        manifest,
        host=Host("linux", 8, usable_cpus=4),
        distribution=RunDistribution(processes=3, expect_workers=0, auto=True),
    )
    out = chosen.to_dict()
    assert out["host"] == {"platform": "linux", "cpus": 8, "usable_cpus": 4}
    assert out["distribution"] == {"processes": 3, "expect_workers": 0, "auto": True}
    (tmp_path / "manifest.json").write_bytes(chosen.to_json())
    assert read_manifest(tmp_path) == chosen
