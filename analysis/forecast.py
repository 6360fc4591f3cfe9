"""The forecast a plan is made for: peak demand, its mix and its shape over the month (730 hours)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.spec.profile import LoadProfile

__all__ = ["HOURS_PER_MONTH", "MINUTES_PER_MONTH", "Forecast", "format_volume"]

HOURS_PER_MONTH = 730.0
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60.0


@dataclass(frozen=True, slots=True)
class Forecast:
    """Peak demand, its mix and its shape over time. ``max_tokens`` is what requests reserve (default: the output
    length). The month's volume: the ``profile``'s (peak × mean share × 730 h), else ``monthly_tokens``, else
    peak × minutes in a month × ``load_factor``."""

    peak_tokens_per_min: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int | None = None
    monthly_tokens: float | None = None
    load_factor: float = 0.35  # average / peak, used when neither monthly_tokens nor a profile is given
    profile: LoadProfile | None = None

    def __post_init__(self) -> None:
        if self.profile is not None and self.monthly_tokens is not None:
            raise ValueError("a profile sets the monthly volume: give it or monthly_tokens, not both")

    @property
    def peak_tokens_per_s(self) -> float:
        return self.peak_tokens_per_min / 60.0

    @property
    def peak_requests_per_s(self) -> float:
        return self.peak_tokens_per_s / (self.prompt_tokens + self.output_tokens)

    @property
    def tokens_per_month(self) -> float:
        if self.profile is not None:
            return self.peak_tokens_per_min * MINUTES_PER_MONTH * self.profile.mean_share
        if self.monthly_tokens is not None:
            return self.monthly_tokens
        return self.peak_tokens_per_min * MINUTES_PER_MONTH * self.load_factor

    @property
    def reserved_tokens(self) -> int:
        """``max_tokens`` as requests send it: what each reserves against OTPM."""
        return self.max_tokens if self.max_tokens is not None else self.output_tokens


def format_volume(value: float) -> str:
    """A token volume as people write it: 876.0M, 78.8B, 11.7T."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:,.1f}{unit}"
    return f"{value:,.0f}"
