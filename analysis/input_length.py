"""Asked vs served input length: did the server count the prompt lengths the workload asked for?

Over the successful requests that have both an asked length (``asked_prompt_tokens``: the workload's, in the
server's tokens) and a served one (``prompt_tokens``: the server's ``usage``), per group (a class, or a stage):

* ``asked`` and ``served`` — the mean lengths;
* ``deviation = (Σ served − Σ asked) / Σ asked`` — what the group's input token rate is off by (a plan sized on
  the asked lengths is off by as much);
* ``p5`` / ``p95`` — percentiles of the per-request deviation ``(served − asked) / asked``.

A group whose ``|deviation|`` exceeds :data:`loadtest.spec.prompts.DEVIATION_LIMIT` (5 %) is ``flagged``: its
input lengths are not the scenario's, so a plan built on the scenario's lengths is not to be trusted (the plans
this tool builds take the served lengths). Requests that asked a length but got no usage count are counted apart
(``without_usage``): a server that reports none cannot be checked. ``docs/metrics.md`` has the definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loadtest.spec.prompts import DEVIATION_LIMIT, PromptCalibration

__all__ = ["DEVIATION_LIMIT", "InputLength", "InputLengths", "input_lengths"]


@dataclass(frozen=True, slots=True)
class InputLength:
    """One group's asked vs served input length (module docstring); the means and deviations are ``None`` when
    no request of the group has both lengths."""

    scope: str  # "class" or "stage"
    name: str
    requests: int  # successful requests with both lengths
    without_usage: int  # successful requests with an asked length and no served one
    asked: float | None
    served: float | None
    deviation: float | None
    p5: float | None
    p95: float | None

    @property
    def flagged(self) -> bool:
        return self.deviation is not None and abs(self.deviation) > DEVIATION_LIMIT

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "name": self.name,
            "requests": self.requests,
            "without_usage": self.without_usage,
            "asked": self.asked,
            "served": self.served,
            "deviation": self.deviation,
            "deviation_p5": self.p5,
            "deviation_p95": self.p95,
            "flagged": self.flagged,
        }


@dataclass(frozen=True, slots=True)
class InputLengths:
    """Every class's and stage's :class:`InputLength`, and the run's calibration (``None``: a run made before
    prompts were calibrated, or whose spec has none)."""

    groups: tuple[InputLength, ...]
    calibration: PromptCalibration | None

    @property
    def measured(self) -> bool:
        """Some request has both lengths."""
        return any(g.requests for g in self.groups)

    @property
    def flagged(self) -> tuple[InputLength, ...]:
        return tuple(g for g in self.groups if g.flagged)

    @property
    def asked_any(self) -> bool:
        return any(g.requests or g.without_usage for g in self.groups)

    def summary(self) -> str:
        """One line: the worst group's deviation, or why nothing could be compared."""
        if not self.asked_any:
            return "no asked lengths recorded (datasets, or a run made before they were)"
        if not self.measured:
            return "the server reported no usage: the served lengths are unknown"
        worst = max((g for g in self.groups if g.deviation is not None), key=lambda g: abs(g.deviation or 0))
        assert worst.deviation is not None
        if self.flagged:
            names = ", ".join(f"{g.scope} {g.name} {g.deviation:+.1%}" for g in self.flagged)
            return (
                f"served input length off the asked by more than ±{DEVIATION_LIMIT:.0%}: {names} — the "
                "scenario's input lengths are not what the server counted (plans use the served lengths)"
            )
        worst_text = f"{worst.scope} {worst.name} {worst.deviation:+.1%}"
        return f"served within ±{DEVIATION_LIMIT:.0%} of the asked (worst {worst_text})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "limit": DEVIATION_LIMIT,
            "groups": [g.to_dict() for g in self.groups],
            "summary": self.summary(),
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        return out


def _group(scope: str, name: str, asked: np.ndarray, served: np.ndarray) -> InputLength:
    both = ~np.isnan(asked) & ~np.isnan(served) & (asked > 0)
    without = int((~np.isnan(asked) & np.isnan(served)).sum())
    n = int(both.sum())
    if not n:
        return InputLength(scope, name, 0, without, None, None, None, None, None)
    a, s = asked[both], served[both]
    per_request = (s - a) / a
    p5, p95 = np.percentile(per_request, [5, 95])
    return InputLength(
        scope,
        name,
        n,
        without,
        float(a.mean()),
        float(s.mean()),
        float((s.sum() - a.sum()) / a.sum()),
        float(p5),
        float(p95),
    )


def input_lengths(
    records: pd.DataFrame, stages: Sequence[str] = (), calibration: PromptCalibration | None = None
) -> InputLengths:
    """Asked vs served per class (in order of first appearance) and per stage (``stages`` first, in that order,
    then any other stage the records name), over successful requests."""
    if records.empty or "asked_prompt_tokens" not in records:
        return InputLengths((), calibration)
    # the columns it reads, not the frame's rows (a copy of every column of a big run); groups by codes, not by a
    # string per row
    ok = records["ok"].to_numpy(dtype=bool)
    asked = records["asked_prompt_tokens"].to_numpy(dtype="float64", na_value=np.nan)[ok]
    served = records["prompt_tokens"].to_numpy(dtype="float64", na_value=np.nan)[ok]
    groups: list[InputLength] = []
    for scope, column, order in (("class", "request_class", ()), ("stage", "stage", tuple(stages))):
        codes, uniques = pd.factorize(records[column][ok], use_na_sentinel=True)
        code_of = {str(u): i for i, u in enumerate(uniques)}  # a missing value is in no group
        names = list(order) + [v for v in code_of if v not in order]
        for name in names:
            if name not in code_of:
                continue
            mask = codes == code_of[name]
            if mask.any():
                groups.append(_group(scope, name, asked[mask], served[mask]))
    return InputLengths(tuple(groups), calibration)
