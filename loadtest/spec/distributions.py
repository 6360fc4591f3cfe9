"""Token-length distributions for request classes: fixed, uniform, normal, lognormal, empirical.

Each is a frozen dataclass with ``sample(rng) -> int`` (clamped to ``[min, max]``, at least 1) and ``mean()``
(the expectation after clamping, estimated once from a seeded sample where there is no closed form — the token-rate
controller starts from it). Built from TOML by :func:`parse_length`:

* ``512`` or ``{dist = "fixed", value = 512}``
* ``{dist = "uniform", min = 100, max = 900}``
* ``{dist = "normal", mean = 500, stddev = 100, min = 1, max = 4000}``
* ``{dist = "lognormal", mean = 500, sigma = 0.6, min = 16, max = 8000}`` — ``mean`` is the distribution's mean
  (before clamping), ``sigma`` the standard deviation of the underlying normal
* ``{dist = "empirical", values = [...]}`` or values taken from a dataset
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Protocol

from loadtest.errors import ConfigError

__all__ = [
    "Empirical",
    "Fixed",
    "LengthDistribution",
    "LogNormal",
    "Normal",
    "Uniform",
    "parse_length",
]

_MEAN_SAMPLES = 20_000


class LengthDistribution(Protocol):
    def sample(self, rng: random.Random) -> int: ...

    def mean(self) -> float: ...

    def describe(self) -> str: ...


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


def _sampled_mean(dist: LengthDistribution) -> float:
    rng = random.Random(12345)
    return sum(dist.sample(rng) for _ in range(_MEAN_SAMPLES)) / _MEAN_SAMPLES


@dataclass(frozen=True, slots=True)
class Fixed:
    value: int

    def sample(self, rng: random.Random) -> int:
        return self.value

    def mean(self) -> float:
        return float(self.value)

    def describe(self) -> str:
        return f"{self.value}"


@dataclass(frozen=True, slots=True)
class Uniform:
    low: int
    high: int

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    def mean(self) -> float:
        return (self.low + self.high) / 2.0

    def describe(self) -> str:
        return f"uniform[{self.low},{self.high}]"


@dataclass(frozen=True, slots=True)
class Normal:
    mu: float
    stddev: float
    low: int = 1
    high: int = 1_000_000

    def sample(self, rng: random.Random) -> int:
        return _clamp(rng.gauss(self.mu, self.stddev), self.low, self.high)

    def mean(self) -> float:
        return _sampled_mean(self)

    def describe(self) -> str:
        return f"normal(μ={self.mu:g},σ={self.stddev:g})"


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Parameterised by its mean (what users know) and σ of log-length: μ_log = ln(mean) − σ²/2."""

    mu_mean: float
    sigma: float
    low: int = 1
    high: int = 1_000_000

    def sample(self, rng: random.Random) -> int:
        mu_log = math.log(self.mu_mean) - self.sigma**2 / 2.0
        return _clamp(rng.lognormvariate(mu_log, self.sigma), self.low, self.high)

    def mean(self) -> float:
        return _sampled_mean(self)

    def describe(self) -> str:
        return f"lognormal(mean={self.mu_mean:g},σ={self.sigma:g})"


@dataclass(frozen=True, slots=True)
class Empirical:
    values: tuple[int, ...]

    def sample(self, rng: random.Random) -> int:
        return self.values[rng.randrange(len(self.values))]

    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def describe(self) -> str:
        return f"empirical(n={len(self.values)})"


def _int(raw: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise ConfigError(f"{where}: '{key}' must be a positive number, got {value!r}")
    return int(value)


def _num(raw: dict[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: '{key}' must be a positive number, got {value!r}")
    return float(value)


def parse_length(raw: Any, where: str) -> LengthDistribution:
    """A distribution from its TOML form; ``where`` names the field in error messages."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise ConfigError(f"{where} must be ≥ 1, got {raw}")
        return Fixed(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f'{where} must be a number or a table like {{dist = "uniform", min = 1, max = 9}}')
    kind = raw.get("dist", "fixed")
    known = {"fixed", "uniform", "normal", "lognormal", "empirical"}
    if kind not in known:
        raise ConfigError(f"{where}: unknown dist {kind!r} (use one of {', '.join(sorted(known))})")
    low = _int(raw, "min", where, 1)
    high = _int(raw, "max", where, 1_000_000)
    if low > high:
        raise ConfigError(f"{where}: min {low} is greater than max {high}")
    if kind == "fixed":
        return Fixed(_int(raw, "value", where))
    if kind == "uniform":
        if "min" not in raw or "max" not in raw:
            raise ConfigError(f"{where}: uniform needs min and max")
        return Uniform(low, high)
    if kind == "normal":
        return Normal(_num(raw, "mean", where), _num(raw, "stddev", where), low, high)
    if kind == "lognormal":
        return LogNormal(_num(raw, "mean", where), _num(raw, "sigma", where), low, high)
    values = raw.get("values")
    if not isinstance(values, list) or not values or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ConfigError(f"{where}: empirical needs a non-empty list 'values' of positive integers")
    return Empirical(tuple(values))
