"""How many words a prompt needs for the server to count the asked number of tokens: the prompt calibration.

A synthetic prompt is a run of short common words (:mod:`loadtest.spec.workload`). A server counts it through its
own tokenizer and chat template, so ``N`` words are not ``N`` tokens: against llama.cpp and vLLM serving SmolLM2,
256 words were counted as 286 prompt tokens (the chat template's ~30 tokens). The calibration is a line per request
kind (chat, completions, embeddings each have their own template)::

    served = tokens_per_word · words + overhead

and a prompt asked to be ``N`` tokens gets ``words = max(1, round((N − overhead) / tokens_per_word))`` words
(:meth:`PromptCalibration.words_for`). Where it comes from (:attr:`KindFit.how`):

* ``fitted`` — the preflight sent probe prompts of known word counts and fitted the line through the server's
  ``usage.prompt_tokens`` (:func:`fit_line`);
* ``tokenizer`` — ``--tokenizer`` chose words that tokenizer counts one token each (``tokens_per_word = 1`` by
  construction), and the preflight's probes measured the overhead only;
* ``given`` — ``--prompt-overhead`` said the overhead (``tokens_per_word`` 1, or the tokenizer's 1);
* ``none`` — nothing to calibrate from (the server reports no usage, ``--skip-preflight``, ``--no-calibrate``):
  one word per token, no overhead, and :attr:`PromptCalibration.note` says why.

The calibration is decided once, in the CLI process, before any load; it travels in the run's spec (``spec.json``,
the manifest's ``spec.prompts``), so every engine process builds the same prompts and a rerun with the same spec
sends the same requests. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "DEVIATION_LIMIT",
    "FitHow",
    "KindFit",
    "PromptCalibration",
    "PromptOptions",
    "fit_line",
]

FitHow = Literal["fitted", "tokenizer", "given", "none"]
# a class or stage whose served input length is off the asked by more than this (relative) is flagged
DEVIATION_LIMIT: Final[float] = 0.05


@dataclass(frozen=True, slots=True)
class PromptOptions:
    """What the user asked for (``--tokenizer``, ``--prompt-overhead``, ``--calibrate/--no-calibrate``, or a
    scenario's ``[prompts]`` table): a tokenizer by name or path, a known overhead in tokens, and whether the
    preflight may calibrate."""

    tokenizer: str | None = None
    overhead: int | None = None
    calibrate: bool = True


@dataclass(frozen=True, slots=True)
class KindFit:
    """The calibration of one request kind. ``probes`` are the preflight's ``(words, served tokens)`` pairs the
    line was fitted through; ``check`` is ``(asked, served)`` of the probe built with the fitted line; ``sent`` how
    many probe requests the calibration sent the endpoint (before the run: they have no records)."""

    kind: str
    tokens_per_word: float = 1.0
    overhead: float = 0.0
    how: FitHow = "none"
    probes: tuple[tuple[int, int], ...] = ()
    check: tuple[int, int] | None = None
    sent: int = 0

    def words_for(self, tokens: int) -> int:
        """Words for a prompt the server should count as ``tokens`` tokens (at least one)."""
        return max(1, round((tokens - self.overhead) / self.tokens_per_word))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "tokens_per_word": self.tokens_per_word,
            "overhead": self.overhead,
            "how": self.how,
            "probes": [list(p) for p in self.probes],
            "sent": self.sent,
        }
        if self.check is not None:
            out["check"] = list(self.check)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> KindFit:
        check = raw.get("check")
        return cls(
            kind=str(raw["kind"]),
            tokens_per_word=float(raw.get("tokens_per_word", 1.0)),
            overhead=float(raw.get("overhead", 0.0)),
            how=raw.get("how", "none"),
            probes=tuple((int(w), int(s)) for w, s in raw.get("probes", ())),
            check=(int(check[0]), int(check[1])) if check else None,
            sent=int(raw.get("sent", 0)),
        )


@dataclass(frozen=True, slots=True)
class PromptCalibration:
    """The run's prompt calibration (module docstring): one :class:`KindFit` per request kind the run sends
    synthetic prompts of; ``words`` the vocabulary prompts are drawn from when a tokenizer chose it (else the
    built-in one); ``tokenizer`` what the user named and ``tokenizer_file`` the file it resolved to; ``note`` why
    a kind is not calibrated, or what the check found."""

    fits: tuple[KindFit, ...] = ()
    words: tuple[str, ...] = ()
    tokenizer: str | None = None
    tokenizer_file: str | None = None
    note: str | None = None
    # what the run must say even with --quiet: a kind left uncalibrated, a tokenizer the server disagrees with,
    # asked lengths the server's template alone exceeds (said when it runs, not kept in the spec)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def fit(self, kind: str) -> KindFit:
        """The fit of ``kind`` (one word per token, no overhead when it has none)."""
        return next((f for f in self.fits if f.kind == kind), KindFit(kind))

    def words_for(self, kind: str, tokens: int) -> int:
        return self.fit(kind).words_for(tokens)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fits": [f.to_dict() for f in self.fits]}
        for key in ("tokenizer", "tokenizer_file", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.words:
            out["words"] = list(self.words)
        return out

    @classmethod
    def from_dict(cls, raw: object) -> PromptCalibration:
        """The spec's ``prompts`` object; ``TypeError`` when it has another shape."""
        if not isinstance(raw, dict) or not isinstance(raw.get("fits", []), list):
            raise TypeError("prompts must be an object with a list of fits")
        try:
            return cls(
                fits=tuple(KindFit.from_dict(f) for f in raw.get("fits", [])),
                words=tuple(str(w) for w in raw.get("words", ())),
                tokenizer=raw.get("tokenizer"),
                tokenizer_file=raw.get("tokenizer_file"),
                note=raw.get("note"),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TypeError(f"prompts: {exc}") from None

    def describe(self) -> str:
        """The whole calibration in one line, as ``loadtest run`` prints it."""
        parts = []
        for f in self.fits:
            if f.how == "none":
                continue
            text = f"{f.kind}: {f.tokens_per_word:.2f} tokens a word + {f.overhead:.4g} overhead ({f.how})"
            if f.check is not None:
                text += f", check {f.check[0]} asked → {f.check[1]} served"
            parts.append(text)
        head = f"tokenizer {self.tokenizer}; " if self.tokenizer else ""
        text = head + "; ".join(parts)
        if self.note:
            text += (" — " if parts else "") + self.note
        return text or "not calibrated"


def fit_line(points: Sequence[tuple[int, int]]) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)`` of ``served = slope · words + intercept`` through ``(words, served)``
    points; ``None`` with fewer than two distinct word counts or a slope that is not positive."""
    if len({w for w, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(w for w, _ in points) / n
    my = sum(s for _, s in points) / n
    sxx = sum((w - mx) ** 2 for w, _ in points)
    slope = sum((w - mx) * (s - my) for w, s in points) / sxx
    if slope <= 0:
        return None
    return slope, my - slope * mx
