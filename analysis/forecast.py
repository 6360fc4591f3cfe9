"""The forecast a plan is made for: peak demand, its mix and its shape over the month (730 hours)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.spec.profile import LoadProfile

__all__ = ["HOURS_PER_MONTH", "MINUTES_PER_MONTH", "FlowPeak", "Forecast", "format_volume"]

HOURS_PER_MONTH = 730.0
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60.0


@dataclass(frozen=True, slots=True)
class FlowPeak:
    """A peak given in flows per second (a Python scenario's tasks), converted with what a run measured per flow
    that ended ``ok`` (``flows`` of them, over every stage of ``run``): ``requests_per_flow`` the records each sent
    (retries included), ``tokens_per_flow`` their prompt + output tokens. Then

    * requests/s = ``flows_per_s`` × ``requests_per_flow``;
    * tokens/min = ``flows_per_s`` × ``tokens_per_flow`` × 60."""

    flows_per_s: float
    requests_per_flow: float
    tokens_per_flow: float
    flows: int
    run: str | None = None

    @property
    def requests_per_s(self) -> float:
        return self.flows_per_s * self.requests_per_flow

    @property
    def tokens_per_min(self) -> float:
        return self.flows_per_s * self.tokens_per_flow * 60.0

    def describe(self) -> str:
        """The conversion with its basis, e.g. ``5 flows/s × 4.2 requests/flow = 21 req/s; × 2,310 tokens/flow
        × 60 = 693,000 tokens/min (measured over 812 ok flows of RUN, retries included)``."""
        where = f" of {self.run}" if self.run else ""
        return (
            f"{self.flows_per_s:,.4g} flows/s × {self.requests_per_flow:,.2f} requests/flow = "
            f"{self.requests_per_s:,.2f} req/s; × {self.tokens_per_flow:,.0f} tokens/flow × 60 = "
            f"{self.tokens_per_min:,.0f} tokens/min (measured over {self.flows:,} ok flows{where}, retries "
            "included)"
        )


@dataclass(frozen=True, slots=True)
class Forecast:
    """Peak demand, its mix and its shape over time. ``max_tokens`` is what requests reserve (default: the output
    length). The month's volume: the ``profile``'s (peak × mean share × 730 h), else ``monthly_tokens``, else
    peak × minutes in a month × ``load_factor``. A peak given in flows/s (``flows``) sets the tokens/min and the
    requests/s, each from what its run measured per flow (:class:`FlowPeak`); otherwise requests/s are
    tokens/s over the mix."""

    peak_tokens_per_min: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int | None = None
    monthly_tokens: float | None = None
    load_factor: float = 0.35  # average / peak, used when neither monthly_tokens nor a profile is given
    profile: LoadProfile | None = None
    flows: FlowPeak | None = (
        None  # the peak was given in flows/s: its requests/s are the flows' (retries too)
    )

    def __post_init__(self) -> None:
        if self.profile is not None and self.monthly_tokens is not None:
            raise ValueError("a profile sets the monthly volume: give it or monthly_tokens, not both")

    @property
    def peak_tokens_per_s(self) -> float:
        return self.peak_tokens_per_min / 60.0

    @property
    def peak_requests_per_s(self) -> float:
        if self.flows is not None:
            return self.flows.requests_per_s
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
