"""Proven right: against simulator endpoints whose capacity is known exactly, ``loadtest run`` + the capacity
analysis find the highest SLO-compliant rate within ±5 % of the exact value, and ``loadtest plan --run`` recommends
a count within ±1 of the exact answer.

The exact values come from the simulator's own model, not from the analysis under test:

* **Server-bound** (a PT endpoint, closed-loop stages, an SLO on E2E p95): in the deterministic simulator every
  request of a closed loop of ``C`` users takes the same E2E, :func:`loadtest.model.predict.predict_closed_loop`'s
  ``e2e_s`` (one cycle of the batch's steps), at ``requests_per_s``; both grow with ``C``. The exact SLO-compliant
  rate is where the model's E2E reaches the limit, between the two integer concurrencies around it. E2E is the
  latency whose closed-loop value does not depend on how the users' phases line up (TTFT and TPOT trade against
  each other with it), so the exact value is one number. The stages are the coarse 8/16/24/32-user grid a user
  would run, not a grid fitted around the answer.
* **Quota-bound** (a pay-per-token endpoint with a QPS quota, constant-rate stages past it): the admitted rate is
  :func:`loadtest.model.quota.ppt_admitted_rate`'s.
* **Count**: the smallest number of replicas (one chunk of the simulator's band each) whose exact SLO capacity
  covers the forecast peak with headroom, against what ``loadtest plan --run`` recommends from the measured run.
* **Queueing theory** (the fixed-slots simulator, an M/D/c server, open-loop Poisson stages, an SLO on TTFT p95):
  the exact rate is queueing theory's (:func:`tests.queueing.exact_rate`, itself proven against closed forms in
  ``tests/unit/test_queueing_truth.py``). The stages are the 80–95 % of c/D a user would sweep in 5 % steps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis import capacity_from_run, load_run
from loadtest.model.predict import predict_closed_loop
from loadtest.model.quota import QuotaLimits, ppt_admitted_rate
from loadtest.model.roofline import Deployment
from loadtest.model.serving import ServingConfig
from tests.helpers import only_run_dir, run_cli
from tests.queueing import EIGHT, exact_rate

pytestmark = pytest.mark.slow

USERS = (8, 16, 24, 32)
HEADROOM = 0.2


@dataclass(frozen=True)
class Case:
    architecture: str
    gpu: str
    prompt: int
    output: int
    e2e_p95_s: float

    @property
    def id(self) -> str:
        return f"{self.architecture}-{self.gpu}-{self.prompt}in-{self.output}out"

    def config(self) -> ServingConfig:
        return ServingConfig(Deployment.of(self.architecture, self.gpu))


CASES = (
    Case("llama-3.1-8b", "h100", 1024, 64, 1.1),
    Case("llama-3.1-8b", "h100", 2048, 128, 2.4),
    Case("mistral-7b", "a100", 1024, 64, 2.3),
    Case("mistral-7b", "a100", 512, 96, 2.0),
)


def exact_slo_rate(case: Case) -> float:
    """Requests/s of the closed loop whose E2E equals the limit (interpolated between integer concurrencies).
    Locust starts a stage's users together: the ``burst`` layout."""
    config = case.config()
    below = predict_closed_loop(config, 1, case.prompt, case.output, start="burst")
    assert below.e2e_s < case.e2e_p95_s
    for c in range(2, 1000):
        above = predict_closed_loop(config, c, case.prompt, case.output, start="burst")
        if above.e2e_s > case.e2e_p95_s:
            f = (case.e2e_p95_s - below.e2e_s) / (above.e2e_s - below.e2e_s)
            return below.requests_per_s + f * (above.requests_per_s - below.requests_per_s)
        below = above
    raise AssertionError("the limit is never reached")


def write_scenario(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def run(scenario: Path, out: Path) -> Path:
    proc = run_cli("run", str(scenario), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(out)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_measured_slo_capacity_and_count_match_the_exact_ones(case: Case, tmp_path: Path) -> None:
    stages = ", ".join(f"{{ concurrency = {u} }}" for u in USERS)
    scenario = write_scenario(
        tmp_path / "proof.toml",
        f"""name = "proof"
seed = 3
[simulator]
architecture = "{case.architecture}"
gpu = "{case.gpu}"
[[classes]]
name = "chat"
prompt_tokens = {case.prompt}
output_tokens = {case.output}
slo = {{ e2e_p95 = "{case.e2e_p95_s}s" }}
[load]
duration = "8s"
stages = [ {stages} ]
""",
    )
    run_dir = run(scenario, tmp_path / "runs")
    exact = exact_slo_rate(case)
    cap = capacity_from_run(load_run(run_dir))
    assert cap.max_rps is not None, cap.basis
    print(
        f"\n{case.id}: measured {cap.max_rps:.3f} req/s, exact {exact:.3f} ({cap.max_rps / exact - 1:+.1%})"
    )
    assert cap.limit == "server" and cap.interpolated, cap.basis
    assert cap.max_rps == pytest.approx(exact, rel=0.05), (cap.max_rps, exact, cap.basis)

    # the count: peak sized so that the exact answer is about ten replicas (one chunk each)
    per_request = case.prompt + case.output
    peak_tokens_per_s = 9.3 * exact * per_request / (1 + HEADROOM)
    exact_count = math.ceil(peak_tokens_per_s * (1 + HEADROOM) / (exact * per_request))
    proc = run_cli(
        "plan",
        "--run",
        str(run_dir),
        "--peak-tpm",
        f"{peak_tokens_per_s * 60:.0f}",
        "--headroom",
        str(HEADROOM),
        "--arch",
        case.architecture,
        "--gpu",
        case.gpu,
        "--prices",
        str(write_scenario(tmp_path / "prices.toml", 'label = "none"\n')),
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    (plan,) = json.loads(proc.stdout)["plans"]
    assert plan["source"].startswith("measured")
    print(f"{case.id}: recommended {plan['chunks']} chunks, exact {exact_count}")
    assert abs(plan["chunks"] - exact_count) <= 1, (plan["chunks"], exact_count, plan)
    assert plan["chunks"] == plan["replicas"]  # one chunk of the simulator's band is one replica


def test_measured_quota_ceiling_matches_the_admitted_rate(tmp_path: Path) -> None:
    qps, prompt, output = 10, 256, 16
    scenario = write_scenario(
        tmp_path / "quota.toml",
        f"""name = "quota-proof"
seed = 4
[simulator]
architecture = "llama-3.1-8b"
mode = "ppt"
qps = {qps}
[[classes]]
name = "chat"
prompt_tokens = {prompt}
output_tokens = {output}
slo = {{ e2e_p95 = "2s" }}
[load]
duration = "6s"
arrival = "constant"
stages = [ {{ rate = 5 }}, {{ rate = 8 }}, {{ rate = 12.5 }}, {{ rate = 16 }} ]
""",
    )
    run_dir = run(scenario, tmp_path / "runs")
    exact, limit = ppt_admitted_rate(QuotaLimits(qps=qps), 16.0, prompt, output)
    assert limit == "queries_per_second"
    cap = capacity_from_run(load_run(run_dir))
    assert cap.max_rps is not None, cap.basis
    print(f"\nquota: measured {cap.max_rps:.3f} req/s, exact {exact:.3f} ({cap.max_rps / exact - 1:+.1%})")
    assert cap.limit == "quota" and "queries_per_second" in cap.limit_detail
    assert cap.max_rps == pytest.approx(exact, rel=0.05), (cap.max_rps, exact, cap.basis)


def test_a_poisson_sweep_of_an_m_d_c_server_finds_queueing_theorys_rate(tmp_path: Path) -> None:
    """Eight slots, 10 ms to the first token and 2 ms per further token, 4 tokens: each request holds a slot 16 ms
    (500 req/s at most); TTFT p95 ≤ 30 ms is met up to 437.4 req/s. Four 12 s Poisson stages at 80–95 % of c/D
    (~5,000 requests each): X* on the target rates within ±5 % (its s.d. over seeds is ~2.2 %,
    tests/unit/test_capacity_coverage.py)."""
    server = EIGHT
    scenario = write_scenario(
        tmp_path / "queue.toml",
        f"""name = "queue-proof"
seed = 5
[simulator]
slots = {server.slots}
prefill_ms = {server.prefill_ms}
tpot_ms = {server.tpot_ms}
[[classes]]
name = "chat"
prompt_tokens = 16
output_tokens = {server.output_tokens}
slo = {{ ttft_p95 = "30ms" }}
[load]
duration = "12s"
arrival = "poisson"
max_concurrency = 256
stages = [ {{ rate = 400 }}, {{ rate = 425 }}, {{ rate = 450 }}, {{ rate = 475 }} ]
""",
    )
    run_dir = run(scenario, tmp_path / "runs")
    exact = exact_rate(server, 0.030)
    cap = capacity_from_run(load_run(run_dir))
    assert cap.max_rps is not None, cap.basis
    low, high = cap.max_rps_ci
    print(
        f"\nM/D/8: measured {cap.max_rps:.1f} req/s ({low} – {high}), exact {exact:.1f} "
        f"({cap.max_rps / exact - 1:+.1%}); {cap.basis}"
    )
    assert [p.x_basis for p in cap.points] == ["target"] * 4, [p.stage for p in cap.points]
    assert cap.interpolated and "on their target rates" in cap.basis, cap.basis
    assert low is not None and high is not None and low < cap.max_rps < high
    assert cap.max_rps == pytest.approx(exact, rel=0.05), (cap.max_rps, exact, cap.basis)
