"""A saturated engine is caught in a closed-loop stage, where there is no schedule to lag behind: with the test hook
``LOADTEST_TEST_ENGINE_BURN_MS`` the engine's event loop is held 50 ms at a time, its loop delay says so in the
``stage_end`` event, and the manifest says the generator did not keep up (and the answer advises more processes when
the engine passed half a core); the same run without the hook, with ``--processes auto``, is well
within the bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analysis import DEFAULT_MAX_LOOP_DELAY_S
from analysis.load_check import SCALE_OUT_CPU_SHARE
from loadtest.engine.loopdelay import BURN_ENV, INTERVAL_S
from loadtest.rundir import read_events, read_manifest
from loadtest.spec.processes import auto_processes, usable_cpus
from tests.helpers import only_run_dir, run_cli

pytestmark = pytest.mark.slow

BURN_MS = 50
STAGE = "concurrency@4"


def run(out: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Path, str, str]:
    """A 3 s closed-loop stage of 4 users against the embedded simulator: the run directory, stdout and stderr."""
    proc = run_cli(
        "run", "-c", "4", "-d", "3s", "--prompt-tokens", "8", "--max-tokens", "16", "--quiet", "--out", str(out),
        *args, env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(out), proc.stdout, proc.stderr


def stage_end(run_dir: Path) -> dict[str, Any]:
    (end,) = [e for e in read_events(run_dir) if e["event"] == "stage_end"]
    return end


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_burning_engine_is_saturated_and_did_not_keep_up(tmp_path: Path, processes: str) -> None:
    run_dir, stdout, stderr = run(tmp_path, "--processes", processes, env={BURN_ENV: str(BURN_MS)})
    end = stage_end(run_dir)
    # a timer due during a burn wakes when it ends: at most an interval was already slept
    assert end["loop_delay_p99_s"] >= BURN_MS / 1000 - INTERVAL_S
    assert end["loop_delay_max_s"] >= end["loop_delay_p99_s"] >= end["loop_delay_p50_s"] > 0
    assert end["workers"] == int(processes)
    burns = [e for e in read_events(run_dir) if e["event"] == "test_engine_burn"]
    assert [e["burn_ms"] for e in burns] == [BURN_MS] * int(processes)  # a run made with the hook says so
    manifest = read_manifest(run_dir)
    (window,) = manifest.stages or ()
    assert window.loop_delay_p99_s == end["loop_delay_p99_s"]
    assert manifest.generator is not None and not manifest.generator.kept_up
    reason = manifest.generator.stages[STAGE]
    assert reason is not None
    assert reason.startswith(
        f"engine saturated: event-loop delay p99 {end['loop_delay_p99_s'] * 1000:.1f} ms"
    )
    assert f"> {DEFAULT_MAX_LOOP_DELAY_S * 1000:g} ms, CPU " in reason
    assert f"warning: {STAGE}: the generator did not keep up: {reason}" in stderr
    # past half a core, the answer also says that more processes would have measured more truly (once)
    share = window.generator_cpu_share
    assert share is not None
    advised = [line for line in stdout.splitlines() if line.startswith("scale-out: ")]
    assert len(advised) == (1 if share > SCALE_OUT_CPU_SHARE else 0), (share, stdout)
    if advised:
        assert f"of a core ({STAGE} {share:.0%})" in advised[0]
        assert "would have measured more truly" in advised[0]


def test_the_same_run_without_the_hook_is_well_within_the_bound(tmp_path: Path) -> None:
    run_dir, stdout, stderr = run(tmp_path, "--processes", "auto")
    end = stage_end(run_dir)
    assert 0 < end["loop_delay_p99_s"] < DEFAULT_MAX_LOOP_DELAY_S / 2
    assert end["worker_cpu_share_max"] < 0.5
    assert not [e for e in read_events(run_dir) if e["event"] == "test_engine_burn"]
    manifest = read_manifest(run_dir)
    assert manifest.generator is not None and manifest.generator.kept_up, manifest.generator
    assert "did not keep up" not in stderr
    assert "scale-out" not in stdout
    # --processes auto: one per core to spare beside the CLI and the simulator, at least one
    assert manifest.distribution.auto
    assert manifest.host.usable_cpus == usable_cpus()
    assert manifest.distribution.processes == end["workers"] == auto_processes(usable_cpus(), simulator=True)
