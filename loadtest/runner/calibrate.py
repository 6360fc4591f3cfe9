"""The preflight's prompt calibration: probe prompts of known word counts, the server's counts, a line per kind.

For each request kind the run sends synthetic prompts of (chat, completions, embeddings), in the CLI process and
before any load (so every engine process gets the same result through the spec):

1. two probes, :data:`SHORT_WORDS` words and ``long`` words (the kind's mean asked length, held to
   [:data:`MIN_LONG_WORDS`, :data:`MAX_PROBE_TOKENS`] so a probe fits a small context), each a non-streamed
   request for 1 output token; the server's ``usage.prompt_tokens`` of each;
2. the line ``served = tokens_per_word · words + overhead`` through the two (with ``--tokenizer``:
   ``tokens_per_word`` is 1 by construction, and the overhead is the mean of ``served − words``);
3. a check probe built with the line for the kind's mean asked length (at most :data:`MAX_PROBE_TOKENS`): its
   ``(asked, served)`` is kept; when it misses by more than a token, the line is refitted through all three
   points (least squares).

A kind whose probes get no usage count (the server reports none, or a probe failed) is not calibrated: one word per
token, no overhead (or ``--prompt-overhead``), and the calibration's note says why. ``--prompt-overhead`` skips the
probes: the overhead is the one given, one word per token (a tokenizer's one-token word). The probes' requests are
not records of the run: they go before it, like the preflight.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from loadtest.client.probe import probe
from loadtest.client.protocol import EndpointSpec, RequestClass, RequestKind
from loadtest.spec.distributions import parse_length
from loadtest.spec.prompts import KindFit, PromptCalibration, PromptOptions, fit_line
from loadtest.spec.tokenizer import load_tokenizer, one_token_words, resolve_tokenizer
from loadtest.spec.workload import PromptFactory

__all__ = ["MAX_PROBE_TOKENS", "calibrate_prompts", "tokenizer_words"]

SHORT_WORDS: Final = 16
MIN_LONG_WORDS: Final = 64
MAX_PROBE_TOKENS: Final = 512
_SLOPE_TOLERANCE: Final = (
    0.005  # with a tokenizer: the server's tokens per word may differ from 1 by this much
)

Counter = Callable[[RequestKind, str, Mapping[str, object]], tuple[int | None, str | None]]


def tokenizer_words(options: PromptOptions) -> tuple[tuple[str, ...], str | None]:
    """The one-token words of ``--tokenizer`` and the file it resolved to (``((), None)`` without one)."""
    if options.tokenizer is None:
        return (), None
    path = resolve_tokenizer(options.tokenizer)
    return one_token_words(load_tokenizer(path), options.tokenizer), str(path)


def http_counter(endpoint: EndpointSpec, headers: Mapping[str, str], timeout_s: float) -> Counter:
    """Send a probe to ``endpoint``: ``(usage.prompt_tokens or None, why not)``."""

    def count(kind: RequestKind, prompt: str, extra: Mapping[str, object]) -> tuple[int | None, str | None]:
        record = probe(endpoint, kind, prompt, headers, timeout_s=timeout_s, extra_body=extra)
        if record.error_class is not None:
            return None, f"a probe failed ({record.error_detail or record.error_class})"
        if record.prompt_tokens is None:
            return None, "the server reports no usage.prompt_tokens"
        return record.prompt_tokens, None

    return count


def _mean_asked(classes: Sequence[RequestClass]) -> float:
    weights = [max(c.weight, 0.0) for c in classes]
    means = [parse_length(c.prompt_tokens, c.name).mean() + c.shared_prefix_tokens for c in classes]
    total = sum(weights) or 1.0
    return sum(w * m for w, m in zip(weights, means, strict=True)) / total


def _calibrate_kind(
    kind: RequestKind,
    classes: Sequence[RequestClass],
    count: Counter,
    prompts: PromptFactory,
    tokenizer: bool,
    seed: int,
) -> tuple[KindFit, str | None]:
    """:func:`_fit_kind`, with how many probe requests it sent."""
    sent = 0

    def counted(kind: RequestKind, text: str, extra: Mapping[str, object]) -> tuple[int | None, str | None]:
        nonlocal sent
        sent += 1
        return count(kind, text, extra)

    fit, note = _fit_kind(kind, classes, counted, prompts, tokenizer, seed)
    return replace(fit, sent=sent), note


def _fit_kind(
    kind: RequestKind,
    classes: Sequence[RequestClass],
    count: Counter,
    prompts: PromptFactory,
    tokenizer: bool,
    seed: int,
) -> tuple[KindFit, str | None]:
    extra = classes[0].extra_body
    asked = max(SHORT_WORDS + 8, min(round(_mean_asked(classes)), MAX_PROBE_TOKENS))
    long_words = max(MIN_LONG_WORDS, asked)
    points: list[tuple[int, int]] = []
    for n in (SHORT_WORDS, long_words):
        text = prompts.prompt(0, n, random.Random(f"{seed}/calibrate/{kind}/{n}"))
        served, why = count(kind, text, extra)
        if served is None:
            return KindFit(kind), f"{kind}: not calibrated: {why}"
        points.append((n, served))
    note = None
    line = fit_line(points)
    if tokenizer:
        overhead = statistics.fmean(s - w for w, s in points)
        if line is not None and abs(line[0] - 1) <= _SLOPE_TOLERANCE:
            fit = KindFit(kind, 1.0, overhead, "tokenizer", tuple(points))
        else:
            per_word = f"{line[0]:.3g}" if line else "an irregular number of"
            note = (
                f"{kind}: the server counts {per_word} tokens per word the tokenizer counts as one: is it the "
                "server's tokenizer? The server's counts were fitted instead"
            )
            line = line or (1.0, overhead)
            fit = KindFit(kind, line[0], line[1], "fitted", tuple(points))
    elif line is None:
        return KindFit(kind), f"{kind}: not calibrated: the server counted the probes irregularly {points}"
    else:
        fit = KindFit(kind, line[0], line[1], "fitted", tuple(points))
    words = fit.words_for(asked)
    served, why = count(
        kind, prompts.prompt(0, words, random.Random(f"{seed}/calibrate/{kind}/check")), extra
    )
    if served is None:
        return KindFit(kind), f"{kind}: not calibrated: {why}"
    check = (asked, served)
    if abs(served - asked) > 1:
        refit = fit_line([*points, (words, served)])
        if refit is not None:
            fit = KindFit(kind, refit[0], refit[1], "fitted", (*points, (words, served)))
            note = (note + "; " if note else "") + f"{kind}: refitted through the check probe"
    return KindFit(kind, fit.tokens_per_word, fit.overhead, fit.how, fit.probes, check), note


def calibrate_prompts(
    classes: Sequence[RequestClass],
    options: PromptOptions,
    count: Counter | None,
    *,
    seed: int,
    skipped: str | None = None,
    vocabulary: tuple[tuple[str, ...], str | None] | None = None,
) -> PromptCalibration:
    """The run's prompt calibration (module docstring). ``count`` sends a probe (``None``: no probes — then
    ``skipped`` says why, e.g. ``--skip-preflight``); ``vocabulary``: :func:`tokenizer_words` of ``options`` when
    the caller resolved it already (so that a wrong tokenizer is refused before anything starts)."""
    words, path = vocabulary if vocabulary is not None else tokenizer_words(options)
    kinds: dict[RequestKind, list[RequestClass]] = {}
    for cls in classes:
        if cls.dataset is None:
            kinds.setdefault(cls.kind, []).append(cls)
    if options.overhead is not None:
        # the chat template's tokens: chat requests only (completions and embeddings send the prompt as it is)
        fits = tuple(KindFit(k, 1.0, float(options.overhead) if k == "chat" else 0.0, "given") for k in kinds)
        return PromptCalibration(fits, words, options.tokenizer, path, warnings=_too_short(fits, kinds))
    if not options.calibrate or count is None:
        why = "--no-calibrate" if not options.calibrate else (skipped or "no probe")
        return PromptCalibration(
            tuple(KindFit(k) for k in kinds),
            words,
            options.tokenizer,
            path,
            f"not calibrated ({why}): one word per token, no overhead",
        )
    prompts = PromptFactory(seed, words)
    measured: list[KindFit] = []
    notes: list[str] = []
    warnings: list[str] = []
    for kind, members in kinds.items():
        fit, note = _calibrate_kind(kind, members, count, prompts, bool(words), seed)
        measured.append(fit)
        if note:
            notes.append(note)
            if fit.how == "none" or (words and fit.how == "fitted"):  # not calibrated, or not the tokenizer's
                warnings.append(note)
    fits = tuple(measured)
    warnings += _too_short(fits, kinds)
    return PromptCalibration(fits, words, options.tokenizer, path, "; ".join(notes) or None, tuple(warnings))


def _too_short(
    fits: Sequence[KindFit], kinds: Mapping[RequestKind, Sequence[RequestClass]]
) -> tuple[str, ...]:
    """A warning per class whose mean asked length is below what a one-word prompt costs on this server (its
    template's overhead plus a word): such prompts are one word, and served longer than asked."""
    out = []
    for fit in fits:
        floor = fit.overhead + fit.tokens_per_word
        if fit.how == "none" or floor <= 1:
            continue
        for cls in next((m for k, m in kinds.items() if k == fit.kind), ()):
            asked = parse_length(cls.prompt_tokens, cls.name).mean() + cls.shared_prefix_tokens
            if asked < floor:
                out.append(
                    f"{cls.name}: prompts asked at {asked:,.0f} tokens cannot be that short here: the server's "
                    f"{fit.kind} template alone counts {fit.overhead:,.0f} tokens, so they will be served at about "
                    f"{floor:,.0f}"
                )
    return tuple(out)
