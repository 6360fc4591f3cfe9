"""The capacity analysis on Poisson sweeps of the fixed-slots server, simulated as discrete events (no real time):
its 95 % interval of X* covers the exact highest SLO-compliant rate (:func:`tests.queueing.exact_rate`) in at least
90 % of seeded repetitions, and X* itself lands within ±5 % of it as the real sweep
(``tests/integration/test_capacity_proof.py``) must.

Each stage is what ``loadtest run`` records against ``loadtest sim --slots``: Poisson arrivals at the stage's target
rate over its window, each started when due (a generator that kept up), a server that starts empty (the engine drains
between stages), TTFT = wait + prefill from the M/D/c recursion, the request over when its slot frees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import capacity
from analysis.frame import with_metrics
from loadtest.rundir import StageWindow
from tests.helpers import window
from tests.queueing import EIGHT, TWO, SlotServer, exact_rate, mdc_waits

REPS = 25
# (server, SLO TTFT p95, the sweep's rates, each stage's seconds, X* held to ±5 %): the eight-slot sweep is the real
# one's (~5,000 requests a stage); the two-slot one's ~1,500 requests a stage leave X* a s.d. of ~4 %
SWEEPS = [
    (EIGHT, 0.030, (400.0, 425.0, 450.0, 475.0), 12.0, True),
    (TWO, 0.080, (30.0, 35.0, 40.0, 45.0, 50.0), 40.0, False),
]


def sweep(
    server: SlotServer, rates: tuple[float, ...], seconds: float, seed: int
) -> tuple[pd.DataFrame, list[StageWindow]]:
    """The records and stage windows of one open-loop Poisson sweep through the M/D/c server."""
    rng = np.random.default_rng(seed)
    frames, windows = [], []
    for i, rate in enumerate(rates):
        t0 = 1000.0 * i
        label = f"poisson@{rate:.2f}rps"
        arrivals = np.sort(rng.uniform(0.0, seconds, rng.poisson(rate * seconds)))
        waits = mdc_waits(arrivals, server.slots, server.service_s)
        n = arrivals.size
        start = t0 + arrivals
        frames.append(
            pd.DataFrame(
                {
                    "stage": label,
                    "request_class": "chat",
                    "scheduled_at": start,
                    "started_at": start,
                    "first_token_at": start + waits + server.prefill_s,
                    "ended_at": start + waits + server.service_s,
                    "error_class": None,
                    "error_detail": None,
                    "prompt_tokens": pd.array(np.full(n, 10), dtype="Int64"),
                    "output_tokens": pd.array(np.full(n, server.output_tokens), dtype="Int64"),
                    "retry_after_s": None,
                    "chunk_gaps": None,
                }
            )
        )
        raw: dict[str, Any] = {"label": label, "start": t0, "window_end": t0 + seconds}
        windows.append(window({**raw, "target": {"kind": "rate", "rate": rate}}))
    return with_metrics(pd.concat(frames, ignore_index=True)), windows


@pytest.mark.parametrize(
    ("server", "limit_s", "rates", "seconds", "precise"), SWEEPS, ids=["eight-slots", "two-slots"]
)
def test_the_95_interval_of_x_star_covers_the_exact_rate(
    server: SlotServer, limit_s: float, rates: tuple[float, ...], seconds: float, precise: bool
) -> None:
    exact = exact_rate(server, limit_s)
    covered, errors, halves = 0, [], []
    for rep in range(REPS):
        records, stages = sweep(server, rates, seconds, seed=server.slots * 1000 + rep)
        result = capacity(records, stages, {"chat": {"ttft_p95": limit_s}})
        low, high = result.max_rps_ci
        assert result.max_rps is not None and low is not None and high is not None, result.basis
        assert "on their target rates" in result.basis and "5 sections" in result.basis, result.basis
        covered += low <= exact <= high
        errors.append(result.max_rps / exact - 1)
        halves.append((high - low) / 2 / exact)
    err = np.array(errors)
    print(
        f"\n{server}: exact {exact:.2f} req/s; X* {err.mean():+.2%} ± {err.std():.2%} (mean, s.d.), "
        f"within ±5 % in {int((np.abs(err) <= 0.05).sum())} of {REPS}; the 95 % interval covers it in "
        f"{covered} of {REPS}, half-width {np.mean(halves):.1%} on average"
    )
    assert covered >= 0.9 * REPS
    if precise:  # what the real sweep of these stages is held to
        assert (np.abs(err) <= 0.05).mean() >= 0.9
