from __future__ import annotations

from pathlib import Path

import pytest

from analysis import calibrate as calibrate_module
from analysis import capacity_from_run, load_run
from analysis.calibrate import (
    Observation,
    calibrate,
    calibration_observations,
    predict_mix,
    predict_observation,
    scaled,
)
from loadtest.model.predict import feasible_batch, saturation
from loadtest.model.roofline import Deployment, decode_cost, prefill_s
from loadtest.model.serving import ServingConfig
from tests.helpers import manifest_dict, stage_rows, write_rows_run

H100_8B = Deployment.of("llama-3.1-8b", "h100")


def test_public_surface() -> None:
    defined = {
        n
        for n, v in vars(calibrate_module).items()
        if not n.startswith("_") and getattr(v, "__module__", "") == calibrate_module.__name__
    }
    assert defined <= set(calibrate_module.__all__)


def sweep(truth: Deployment) -> list[Observation]:
    """A closed-loop concurrency sweep at two mixes, 'measured' on the known deployment."""
    out = []
    for p, n in ((256, 128), (2000, 200)):
        for c in (1, 4, 16, 64, 200):
            tpot, ttft = predict_observation(truth, Observation(c, p, n, 1.0, 1.0))
            out.append(Observation(c, p, n, tpot, ttft))
    return out


@pytest.mark.parametrize(
    ("base", "s_m", "s_c", "c0"),
    [(H100_8B, 0.85, 1.1, 0.003), (Deployment.of("llama-3.3-70b", "a100", tp=4), 1.15, 0.8, 0.0015)],
    ids=["8b-h100", "70b-a100-tp4"],
)
def test_calibration_recovers_a_perturbed_deployment(
    base: Deployment, s_m: float, s_c: float, c0: float
) -> None:
    truth = scaled(base, s_m, s_c, c0)
    fit = calibrate(base, sweep(truth))
    assert fit.memory_scale == pytest.approx(s_m, rel=0.03)
    assert fit.compute_scale == pytest.approx(s_c, rel=0.03)
    assert fit.c0_s == pytest.approx(c0, rel=0.05)
    assert fit.max_abs_relative_error < 0.01 and len(fit.residuals) == 20
    assert fit.deployment.gpu.mbu == pytest.approx(base.gpu.mbu * fit.memory_scale)
    # the fitted deployment is what the simulator and the predictions use
    assert saturation(ServingConfig(fit.deployment), 1000, 100).output_tokens_per_s == pytest.approx(
        saturation(ServingConfig(truth), 1000, 100).output_tokens_per_s, rel=0.03
    )


def test_calibration_with_noise_stays_close() -> None:
    truth = scaled(H100_8B, 0.9, 0.95, 0.0025)
    noisy = [
        Observation(o.concurrency, o.prompt_tokens, o.output_tokens, o.tpot_s * f, o.ttft_s / f)
        for o, f in zip(sweep(truth), [1.03, 0.97] * 5, strict=True)
    ]
    fit = calibrate(H100_8B, noisy)
    assert fit.memory_scale == pytest.approx(0.9, rel=0.08)
    assert fit.compute_scale == pytest.approx(0.95, rel=0.08)
    assert 0.02 < fit.rms_log_error < 0.05


def test_bounds_and_validation() -> None:
    fast = scaled(H100_8B, 0.5, 0.5, 0.0)
    obs = [Observation(1, 100, 50, 1e-5, 1e-5)]  # absurdly fast: the fit stops at the hardware peak
    fit = calibrate(fast, obs)
    assert fit.deployment.gpu.mbu <= 1.0 + 1e-9 and fit.deployment.gpu.mfu <= 1.0 + 1e-9
    with pytest.raises(ValueError, match="at least one"):
        calibrate(H100_8B, [])
    with pytest.raises(ValueError, match="output >= 2"):
        Observation(1, 10, 1, 0.01, 0.01)


@pytest.mark.parametrize(("p", "n"), [(2048, 256), (128, 128), (1000, 1000)])
def test_predict_mix_is_consistent_with_saturation(p: int, n: int) -> None:
    mix = predict_mix(H100_8B, p, n)
    sat = saturation(ServingConfig(H100_8B, max_batch=256), p, n)
    assert mix.max_output_tokens_per_s == pytest.approx(sat.output_tokens_per_s)
    assert mix.requests_per_s == pytest.approx(sat.requests_per_s)
    assert mix.max_total_tokens_per_s == pytest.approx(sat.requests_per_s * (p + n))
    assert mix.tpot_s_at_saturation == pytest.approx(sat.tpot_s)
    assert mix.ttft_s_unloaded == pytest.approx(H100_8B.c0_s + prefill_s(H100_8B, p))
    assert mix.batch == feasible_batch(ServingConfig(H100_8B), p, n)


def test_predict_mix_binding() -> None:
    assert predict_mix(H100_8B, 2048, 256, max_batch=8).resource == "memory"
    assert predict_mix(H100_8B, 2048, 256, max_batch=4096).resource == "kv"
    big = predict_mix(H100_8B, 16, 16, max_batch=2048)
    assert big.resource == decode_cost(H100_8B, 2048, 24).bound == "compute"
    assert predict_mix(Deployment.of("bge-large", "a100"), 512, 0).resource == "compute"


def test_a_simultaneous_start_is_fitted_with_the_burst_layout() -> None:
    """Locust starts a stage's users together and the deterministic simulator keeps them in step: the run's TTFT
    and TPOT are the burst layout's, and fitting them with the spread layout would be wrong."""
    truth = scaled(H100_8B, 0.9, 1.05, 0.002)
    obs = []
    for p, n in ((256, 128), (2000, 200)):
        for c in (1, 4, 16, 64):
            tpot, ttft = predict_observation(truth, Observation(c, p, n, 1.0, 1.0), start="burst")
            obs.append(Observation(c, p, n, tpot, ttft))
    fit = calibrate(H100_8B, obs, start="burst")
    assert fit.memory_scale == pytest.approx(0.9, rel=0.03) and fit.compute_scale == pytest.approx(
        1.05, rel=0.03
    )
    assert fit.max_abs_relative_error < 0.01
    assert calibrate(H100_8B, obs).max_abs_relative_error > 0.2  # the spread layout cannot explain them


def test_calibration_observations_are_a_runs_closed_loop_stages(tmp_path: Path) -> None:
    # 4 users for 10 s: every request 10 in / 101 out, TTFT 0.2 s, so TPOT = (10 − 0.2) / 100; the open-loop stage
    # has no user count and is left out
    rows = stage_rows("c4", 40, 10.0, 0.2) + stage_rows("r20", 200, 10.0, 0.3, t0=1000.0)
    stages = [
        {"label": "c4", "target": {"kind": "concurrency", "users": 4}},
        {"label": "r20", "target": {"kind": "rate", "rate": 20.0}},
    ]
    run = write_rows_run(
        tmp_path / "run", rows, manifest_dict(stage_labels=(), stages=stages), prompt_tokens=10
    )
    (obs,) = calibration_observations(capacity_from_run(load_run(run)))
    assert (obs.concurrency, obs.prompt_tokens, obs.output_tokens) == (4, 10, 101)
    assert obs.tpot_s == pytest.approx(0.098) and obs.ttft_s == pytest.approx(0.2)
