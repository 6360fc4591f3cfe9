"""Open-loop arrival processes and the token-rate controller. Pure and seeded.

Arrival processes (inter-arrival gaps for a rate λ in requests/s):

* ``constant``  gap = 1/λ
* ``poisson``   gap ~ Exponential(λ): coefficient of variation (CV) 1
* ``gamma``     gap ~ Gamma(shape = b, scale = 1/(λ·b)) with burstiness ``b``: mean 1/λ, CV = 1/√b
  (b < 1 burstier than Poisson, b > 1 smoother; b = 1 is Poisson — vLLM's ``--burstiness``, AIPerf's
  ``--arrival-smoothness``)

Token rate: a target in tokens per minute (total, or input and output separately) becomes a request rate
λ = target / 60 / E[tokens per request]. E starts from the workload's expected lengths and follows the usage of
completed requests (a running mean in which the prior counts as ``prior_weight`` requests), so a server that stops
early or a chat template that adds tokens is corrected for. With separate input and output targets, λ is the
largest rate that exceeds neither.

:meth:`TokenRateController.rate_at` adds integral correction: it estimates the tokens offered so far (usage of
completed requests plus the expectation for those still in flight or failed) and picks the rate that brings the
cumulative count back onto the target line over the next ``horizon_s`` seconds, clamped to ¼×–4× the base rate.
So a stage's offered token rate meets its target even when the first requests' expectation was wrong.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["ArrivalProcess", "TokenRateController", "arrival_times", "token_rate_label"]

ArrivalKind = Literal["constant", "poisson", "gamma"]


@dataclass(frozen=True, slots=True)
class ArrivalProcess:
    kind: ArrivalKind = "poisson"
    burstiness: float = 1.0

    def __post_init__(self) -> None:
        if self.burstiness <= 0:
            raise ValueError("burstiness must be positive")

    def gap(self, rate: float, rng: random.Random) -> float:
        """One inter-arrival gap (seconds) at ``rate`` requests/s."""
        if rate <= 0:
            return math.inf
        if self.kind == "constant":
            return 1.0 / rate
        if self.kind == "poisson":
            return rng.expovariate(rate)
        return rng.gammavariate(self.burstiness, 1.0 / (rate * self.burstiness))

    @property
    def cv(self) -> float:
        """The coefficient of variation of the gaps."""
        return {"constant": 0.0, "poisson": 1.0}.get(self.kind, 1.0 / math.sqrt(self.burstiness))

    def label(self, rate: float) -> str:
        name = self.kind if self.kind != "gamma" else f"gamma{self.burstiness:g}"
        return f"{name}@{rate:.2f}rps"


def arrival_times(process: ArrivalProcess, rate: float, duration_s: float, seed: int) -> list[float]:
    """Arrival offsets (seconds from the stage start) in ``[0, duration_s)`` — the first at 0 for constant."""
    rng = random.Random(seed)
    t = 0.0 if process.kind == "constant" else process.gap(rate, rng)
    out: list[float] = []
    while t < duration_s:
        out.append(t)
        t += process.gap(rate, rng)
    return out


class TokenRateController:
    """Turns a tokens-per-minute target into a request rate, corrected by observed usage."""

    def __init__(
        self,
        *,
        total_per_min: float | None = None,
        input_per_min: float | None = None,
        output_per_min: float | None = None,
        expected_input: float,
        expected_output: float,
        prior_weight: float = 20.0,
    ) -> None:
        if total_per_min is None and input_per_min is None and output_per_min is None:
            raise ValueError("a token-rate target needs total, input or output tokens per minute")
        if total_per_min is not None and (input_per_min is not None or output_per_min is not None):
            raise ValueError("give either a total token rate or input/output rates, not both")
        self.total_per_min = total_per_min
        self.input_per_min = input_per_min
        self.output_per_min = output_per_min
        self._prior_in = expected_input
        self._prior_out = expected_output
        self._weight = prior_weight
        self._sum_in = 0.0
        self._sum_out = 0.0
        self._n = 0

    def observe(self, prompt_tokens: int | None, output_tokens: int | None) -> None:
        """Fold in one completed request's usage (requests without usage are ignored)."""
        if prompt_tokens is None or output_tokens is None:
            return
        self._sum_in += prompt_tokens
        self._sum_out += output_tokens
        self._n += 1

    @property
    def expected_input(self) -> float:
        return (self._weight * self._prior_in + self._sum_in) / (self._weight + self._n)

    @property
    def expected_output(self) -> float:
        return (self._weight * self._prior_out + self._sum_out) / (self._weight + self._n)

    def rate(self) -> float:
        """The request rate (requests/s) that meets the target with the current expectations."""
        e_in, e_out = self.expected_input, self.expected_output
        if self.total_per_min is not None:
            return self.total_per_min / 60.0 / max(e_in + e_out, 1e-9)
        rates = []
        if self.input_per_min is not None:
            rates.append(self.input_per_min / 60.0 / max(e_in, 1e-9))
        if self.output_per_min is not None:
            rates.append(self.output_per_min / 60.0 / max(e_out, 1e-9))
        return min(rates)

    def rate_at(self, elapsed_s: float, arrivals: int, horizon_s: float = 2.0) -> float:
        """The rate for the next ``horizon_s`` seconds, ``elapsed_s`` into the stage after ``arrivals`` arrivals."""
        base = self.rate()
        if elapsed_s <= 0 or base <= 0:
            return base
        pending = max(0, arrivals - self._n)
        e_in, e_out = self.expected_input, self.expected_output
        targets: list[tuple[float, float, float]] = []  # (tokens per second, expectation, done so far)
        if self.total_per_min is not None:
            targets.append((self.total_per_min / 60.0, e_in + e_out, self._sum_in + self._sum_out))
        if self.input_per_min is not None:
            targets.append((self.input_per_min / 60.0, e_in, self._sum_in))
        if self.output_per_min is not None:
            targets.append((self.output_per_min / 60.0, e_out, self._sum_out))
        rates = []
        for per_s, expect, done in targets:
            expect = max(expect, 1e-9)
            offered = done + pending * expect
            rates.append((per_s * (elapsed_s + horizon_s) - offered) / (horizon_s * expect))
        return min(max(min(rates), 0.25 * base), 4.0 * base)

    def label(self) -> str:
        return token_rate_label(self.total_per_min, self.input_per_min, self.output_per_min)


def token_rate_label(total: float | None, input_: float | None, output: float | None) -> str:
    """``tokens@120000tpm`` or ``tokens@in100000+out20000tpm``: the readable identity of a token-rate stage."""
    if total is not None:
        return f"tokens@{total:.0f}tpm"
    parts = [f"{name}{value:.0f}" for name, value in (("in", input_), ("out", output)) if value is not None]
    return "tokens@" + "+".join(parts) + "tpm"
