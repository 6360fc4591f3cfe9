"""Pay-per-token against a forecast: what the quotas (ITPM / OTPM / QPH / QPS) admit hour by hour, what is served
and what it costs, whether it fits at the peak, and the break-even volume against a provisioned-throughput plan."""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.forecast import HOURS_PER_MONTH, MINUTES_PER_MONTH, Forecast, format_volume
from analysis.prices import PriceEntry
from loadtest.model.quota import LimitType, QuotaLimits, ppt_admitted_rate

__all__ = ["DEFAULT_MAX_REFUSED", "PayPerToken", "break_even", "pay_per_token"]

DEFAULT_MAX_REFUSED = 0.01  # pay-per-token "fits" while at most this share of the peak is refused (HTTP 429)


@dataclass(frozen=True, slots=True)
class PayPerToken:
    fits: bool | None = None
    peak_share: float | None = None
    quota: LimitType | None = None
    refused_share: float | None = None
    by_hour: tuple[float, ...] | None = None
    served: float | None = None
    per_token: float | None = None
    cost: float | None = None
    ceiling_tokens_per_month: float | None = None  # the most the quotas admit in a month


def pay_per_token(
    forecast: Forecast, entry: PriceEntry, prompt: int, output: int, hold_s: float, max_refused: float
) -> PayPerToken:
    """Admitted vs refused volume under the quotas, hour by hour (the profile's hours, else the month's average
    rate), priced for what is served; the fit judged at the peak."""
    per_token = None
    if entry.ppt_input_per_million is not None and (output == 0 or entry.ppt_output_per_million is not None):
        per_token = (
            (prompt * entry.ppt_input_per_million + output * (entry.ppt_output_per_million or 0.0))
            / (prompt + output)
            / 1e6
        )
    size = prompt + output
    volume = forecast.tokens_per_month
    quotas = [entry.itpm, entry.otpm, entry.qph, entry.qps]
    if all(q is None for q in quotas):
        cost = volume * per_token if per_token is not None else None
        return PayPerToken(served=volume, per_token=per_token, cost=cost)
    limits = QuotaLimits(itpm=entry.itpm, otpm=entry.otpm, qph=entry.qph, qps=entry.qps)

    def admitted(rps: float) -> tuple[float, LimitType | None]:
        return ppt_admitted_rate(limits, rps, prompt, forecast.reserved_tokens, output, duration_s=hold_s)

    peak_rps = forecast.peak_requests_per_s
    at_peak, quota = admitted(peak_rps)
    share = 1.0 - at_peak / peak_rps if peak_rps > 0 else 0.0
    by_hour = None
    if forecast.profile is not None:
        rates = [peak_rps * s for s in forecast.profile.shares]
        through = [admitted(r)[0] for r in rates]
        by_hour = tuple(a / r if r > 0 else 1.0 for a, r in zip(through, rates, strict=True))
        served = sum(through) / len(rates) * size * 3600 * HOURS_PER_MONTH
    else:  # spread evenly: the month's average rate
        average = volume / (HOURS_PER_MONTH * 3600) / size
        served = volume * (admitted(average)[0] / average if average > 0 else 1.0)
    ceiling = admitted(math.inf)[0] * size * 3600 * HOURS_PER_MONTH
    return PayPerToken(
        fits=share <= max_refused,
        peak_share=share,
        quota=quota,
        refused_share=1.0 - served / volume if volume > 0 else 0.0,
        by_hour=by_hour,
        served=served,
        per_token=per_token,
        cost=served * per_token if per_token is not None else None,
        ceiling_tokens_per_month=ceiling,
    )


def break_even(
    pt_cost: float | None, ppt: PayPerToken, forecast: Forecast
) -> tuple[float | None, str | None]:
    """The monthly volume at which pay-per-token costs what this PT plan costs — only within the volumes this
    forecast's peak (all month at the peak) and the quotas can reach; otherwise None and why."""
    if pt_cost is None or ppt.per_token is None or ppt.per_token <= 0:
        return None, None
    volume = pt_cost / ppt.per_token
    at_peak = forecast.peak_tokens_per_min * MINUTES_PER_MONTH
    ceiling = ppt.ceiling_tokens_per_month
    if ceiling is not None and ceiling < at_peak and volume > ceiling:
        return None, (
            f"no break-even: the quotas admit at most {format_volume(ceiling)} tokens/month, below the "
            f"{format_volume(volume)} at which pay-per-token would cost what PT does"
        )
    if volume > at_peak:
        return None, (
            f"no break-even: even the peak all month ({format_volume(at_peak)} tokens) costs less on pay-per-token "
            f"(${at_peak * ppt.per_token:,.0f}) than PT (${pt_cost:,.0f})"
        )
    return volume, None
