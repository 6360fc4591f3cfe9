"""What each request carries: seeded synthetic prompts of a target token length, and the request factory.

Prompts are built from short, common English words: under the simulator's default token rule every word is exactly
one token, and under BPE tokenizers (Llama, SmolLM2) such words are almost always one token too. How many words a
prompt asked to be N tokens gets is the run's prompt calibration (:mod:`loadtest.spec.prompts`): the server's
tokens per word and its chat template's overhead, measured by the preflight — or, with ``--tokenizer``, a
vocabulary of words that tokenizer counts one token each. Without one, N words. Every request gets its own prompt
(no accidental prefix caching), and the same seed, calibration and sequence number always give the same prompt.
Each request carries its asked length (:attr:`PreparedRequest.asked_prompt_tokens`), which its record keeps.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loadtest.client.protocol import EndpointSpec, PreparedRequest, RequestClass, build_request
from loadtest.errors import ConfigError
from loadtest.spec.distributions import Empirical, LengthDistribution, parse_length
from loadtest.spec.prompts import PromptCalibration

__all__ = ["WORDS", "DatasetRow", "PromptFactory", "RequestFactory", "load_dataset"]

WORDS: tuple[str, ...] = tuple(
    (
        "the of and to in is you that it he was for on are as with his they at be this have from or one "
        "had by word but not what all were we when your can said there use an each which she do how their "
        "if will up other about out many then them these so some her would make like him into time has "
        "look two more write go see number no way could people my than first water been call who oil "
        "its now find long down day did get come made may part "
    ).split()
)


def _seed_of(*parts: object) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class PromptFactory:
    """``prompt(seq, n_words)`` gives the seeded prompt of ``n_words`` words for request number ``seq``, drawn
    from ``words`` (default :data:`WORDS`)."""

    def __init__(self, seed: int, words: Sequence[str] = ()) -> None:
        self.seed = seed
        self.words: tuple[str, ...] = tuple(words) or WORDS

    def prompt(self, seq: int, n_words: int, rng: random.Random | None = None) -> str:
        rng = rng or random.Random(_seed_of(self.seed, "prompt", seq))
        return " ".join(rng.choices(self.words, k=max(1, n_words)))

    def prefix(self, name: str, n_words: int) -> str:
        """The shared prefix of a class: identical for every request of that class in a run."""
        return self.prompt(0, n_words, random.Random(_seed_of(self.seed, "prefix", name)))


@dataclass(frozen=True, slots=True)
class DatasetRow:
    prompt: str | list[dict[str, Any]]
    output_tokens: int | None


def load_dataset(path: Path, where: str) -> list[DatasetRow]:
    """Rows of a JSONL dataset: each line has ``prompt`` (text) or ``messages`` (chat), and optionally
    ``output_tokens`` (the length to ask for; else the class's ``output_tokens`` distribution applies)."""
    if not path.is_file():
        raise ConfigError(f"{where}: dataset {path} does not exist")
    rows: list[DatasetRow] = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}: {path}:{n} is not valid JSON") from None
        prompt = obj.get("messages") or obj.get("prompt") if isinstance(obj, dict) else None
        if not isinstance(prompt, str | list) or not prompt:
            raise ConfigError(f"{where}: {path}:{n} needs a 'prompt' string or a 'messages' list")
        out = obj.get("output_tokens")
        rows.append(DatasetRow(prompt, int(out) if isinstance(out, int) and out > 0 else None))
    if not rows:
        raise ConfigError(f"{where}: dataset {path} is empty")
    return rows


@dataclass(frozen=True, slots=True)
class _ClassPlan:
    cls: RequestClass
    prompt_len: LengthDistribution
    output_len: LengthDistribution
    prefix: str
    prefix_words: int
    dataset: list[DatasetRow] | None


class RequestFactory:
    """Request number ``seq`` of a run, always the same for the same seed: class (by weight), lengths, prompt.

    Every random choice for a request comes from its own generator seeded by ``(seed, seq)``, so the content does
    not depend on which worker sends it or in which order.
    """

    def __init__(
        self,
        endpoint: EndpointSpec,
        classes: Sequence[RequestClass],
        seed: int,
        calibration: PromptCalibration | None = None,
    ) -> None:
        if not classes:
            raise ConfigError("a workload needs at least one request class")
        self.endpoint = endpoint
        self.seed = seed
        # None: as the endpoint says; False once the endpoint rejected stream_options (external models)
        self.include_usage: bool | None = None
        self.calibration = calibration or PromptCalibration()
        self.prompts = PromptFactory(seed, self.calibration.words)
        self.plans: list[_ClassPlan] = []
        for i, cls in enumerate(classes):
            where = f"classes[{i}] ({cls.name})"
            dataset = load_dataset(Path(cls.dataset), where) if cls.dataset else None
            # the prefix is inside the prompt: its words scale with tokens per word, the overhead is counted once
            per_word = self.calibration.fit(cls.kind).tokens_per_word
            prefix_words = (
                max(1, round(cls.shared_prefix_tokens / per_word)) if cls.shared_prefix_tokens else 0
            )
            prefix = self.prompts.prefix(cls.name, prefix_words) if prefix_words else ""
            self.plans.append(
                _ClassPlan(
                    cls,
                    parse_length(cls.prompt_tokens, f"{where}.prompt_tokens"),
                    parse_length(cls.output_tokens, f"{where}.output_tokens"),
                    prefix,
                    prefix_words,
                    dataset,
                )
            )
        total = sum(max(0.0, c.weight) for c in classes)
        if total <= 0:
            raise ConfigError("request class weights must add up to more than 0")
        cumulative, acc = [], 0.0
        for cls in classes:
            acc += max(0.0, cls.weight) / total
            cumulative.append(acc)
        self._cumulative = cumulative

    def expected_tokens(self) -> tuple[float, float]:
        """Expected (input, output) tokens per request over the mix (datasets: their lengths in words)."""
        e_in = e_out = 0.0
        prev = 0.0
        for plan, cum in zip(self.plans, self._cumulative, strict=True):
            share, prev = cum - prev, cum
            prompt_len = plan.prompt_len.mean() + plan.cls.shared_prefix_tokens
            if plan.dataset:
                prompt_len = Empirical(tuple(max(1, _words(r.prompt)) for r in plan.dataset)).mean()
            e_in += share * prompt_len
            e_out += share * (0.0 if plan.cls.kind == "embeddings" else plan.output_len.mean())
        return e_in, e_out

    def make(self, seq: int) -> PreparedRequest:
        rng = random.Random(_seed_of(self.seed, "request", seq))
        pick = rng.random()
        index = next((i for i, cum in enumerate(self._cumulative) if pick < cum), len(self.plans) - 1)
        plan = self.plans[index]
        out_len = plan.output_len.sample(rng)
        prompt: str | list[dict[str, Any]]
        asked: int | None = None
        if plan.dataset:  # a dataset's prompt is sent as it is: no length was asked
            row = plan.dataset[rng.randrange(len(plan.dataset))]
            prompt = row.prompt
            out_len = row.output_tokens or out_len
        else:
            asked = plan.prompt_len.sample(rng) + plan.cls.shared_prefix_tokens
            words = max(1, self.calibration.words_for(plan.cls.kind, asked) - plan.prefix_words)
            body = self.prompts.prompt(seq, words, rng)
            prompt = f"{plan.prefix} {body}" if plan.prefix else body
        return build_request(
            self.endpoint,
            plan.cls,
            prompt,
            max_tokens=out_len,
            include_usage=self.include_usage,
            asked_prompt_tokens=asked,
        )


def _words(prompt: str | list[dict[str, Any]]) -> int:
    if isinstance(prompt, str):
        return len(prompt.split())
    return sum(len(str(m.get("content", "")).split()) for m in prompt)
