from __future__ import annotations

import random

import pytest

from loadtest.errors import ConfigError
from loadtest.spec.distributions import Empirical, Fixed, LogNormal, Uniform, parse_length


def test_parse_forms() -> None:
    assert parse_length(512, "x") == Fixed(512)
    assert parse_length({"dist": "uniform", "min": 10, "max": 20}, "x") == Uniform(10, 20)
    assert isinstance(parse_length({"dist": "lognormal", "mean": 500, "sigma": 0.5}, "x"), LogNormal)
    assert parse_length({"dist": "empirical", "values": [1, 2, 3]}, "x") == Empirical((1, 2, 3))


@pytest.mark.parametrize(
    "raw",
    [
        0,
        -3,
        "many",
        {"dist": "zipf"},
        {"dist": "uniform", "min": 5},
        {"dist": "uniform", "min": 9, "max": 2},
        {"dist": "normal", "mean": 5},
        {"dist": "empirical", "values": []},
        True,
    ],
)
def test_bad_forms_name_the_field(raw: object) -> None:
    with pytest.raises(ConfigError, match=r"classes\[0\]\.prompt_tokens"):
        parse_length(raw, "classes[0].prompt_tokens")


def test_lognormal_mean_is_the_requested_mean_and_clamps() -> None:
    dist = LogNormal(500, 0.6, low=16, high=100_000)
    assert dist.mean() == pytest.approx(500, rel=0.03)
    rng = random.Random(3)
    samples = [dist.sample(rng) for _ in range(5_000)]
    assert min(samples) >= 16
    clamped = LogNormal(500, 1.5, low=1, high=600)
    assert max(clamped.sample(rng) for _ in range(2_000)) == 600


def test_uniform_bounds_inclusive() -> None:
    rng = random.Random(0)
    values = {Uniform(3, 5).sample(rng) for _ in range(200)}
    assert values == {3, 4, 5}
