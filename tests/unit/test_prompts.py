"""Prompt lengths in the server's tokens: the calibration's line, its probes against a server whose token rule is
known exactly (the simulator's :class:`TokenRule` with a ratio ≠ 1 and a chat template), ``--tokenizer`` with a
tokenizer trained here (never downloaded), and the asked vs served analysis."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from analysis.input_length import input_lengths
from loadtest.client.protocol import EndpointSpec, RequestClass, RequestKind
from loadtest.errors import ConfigError
from loadtest.runner.calibrate import calibrate_prompts
from loadtest.sim.tokens import TokenRule, count_tokens, split_inputs
from loadtest.spec.prompts import KindFit, PromptCalibration, PromptOptions, fit_line
from loadtest.spec.runspec import RunSpec, Stage
from loadtest.spec.tokenizer import load_tokenizer, one_token_words, resolve_tokenizer
from loadtest.spec.workload import WORDS, RequestFactory

ENDPOINT = EndpointSpec(base_url="http://x/v1", model="m")


def sim_counter(rule: TokenRule, calls: list[tuple[str, int]] | None = None):  # type: ignore[no-untyped-def]
    """A probe counter that counts as the simulator with ``rule`` does (chat: the template once)."""

    def count(kind: RequestKind, prompt: str, _extra: Mapping[str, object]) -> tuple[int | None, str | None]:
        if calls is not None:
            calls.append((kind, len(prompt.split())))
        if kind == "chat":
            return rule.chat([{"role": "user", "content": prompt}]), None
        return split_inputs(prompt, "prompt", rule)[0][1], None

    return count


def test_fit_line_is_exact_on_a_line_and_refuses_one_point() -> None:
    assert fit_line([(16, 50), (256, 350)]) == (1.25, 30.0)
    assert fit_line([(10, 40), (20, 50), (30, 60)]) == pytest.approx((1.0, 30.0))
    assert fit_line([(16, 50), (16, 51)]) is None
    assert fit_line([(16, 50), (32, 40)]) is None  # fewer tokens for more words: no line to trust


def test_words_for_inverts_the_line() -> None:
    fit = KindFit("chat", 1.25, 30.0, "fitted")
    assert fit.words_for(256) == 181  # (256 − 30) / 1.25 = 180.8
    assert fit.words_for(10) == 1  # shorter than the template: one word, the least a prompt has
    assert KindFit("chat").words_for(128) == 128  # uncalibrated: one word per token


def test_calibration_against_a_known_token_rule_is_exact() -> None:
    rule = TokenRule(tokens_per_word=1.25, template_tokens=30)
    classes = (RequestClass(prompt_tokens=256), RequestClass(name="c", kind="completions", prompt_tokens=200))
    calls: list[tuple[str, int]] = []
    cal = calibrate_prompts(classes, PromptOptions(), sim_counter(rule, calls), seed=3)
    chat, completions = cal.fits
    # chat: 16 words → 20 + 30, 256 words → 320 + 30; the check: 181 words → 226 + 30 = 256, as asked
    assert chat == KindFit("chat", 1.25, 30.0, "fitted", ((16, 50), (256, 350)), (256, 256), sent=3)
    assert completions == KindFit(
        "completions", 1.25, 0.0, "fitted", ((16, 20), (200, 250)), (200, 200), sent=3
    )
    assert calls == [
        ("chat", 16),
        ("chat", 256),
        ("chat", 181),
        ("completions", 16),
        ("completions", 200),
        ("completions", 160),
    ]
    assert cal.note is None
    # the run's requests: every asked length the rule can reach is served exactly
    factory = RequestFactory(
        ENDPOINT, (RequestClass(prompt_tokens={"dist": "uniform", "min": 40, "max": 900}),), 3, cal
    )
    served = []
    for seq in range(300):
        request = factory.make(seq)
        body = orjson.loads(request.body)
        assert request.asked_prompt_tokens is not None
        served.append(rule.chat(body["messages"]) - request.asked_prompt_tokens)
    # 1.25 tokens a word reaches four of every five lengths; the others are one token off
    assert set(served) <= {-1, 0, 1}
    assert served.count(0) > 0.7 * len(served)


def test_a_server_with_no_usage_is_not_calibrated_and_says_so() -> None:
    def no_usage(_kind: RequestKind, _p: str, _e: Mapping[str, object]) -> tuple[int | None, str | None]:
        return None, "the server reports no usage.prompt_tokens"

    cal = calibrate_prompts((RequestClass(),), PromptOptions(), no_usage, seed=0)
    assert cal.fits == (KindFit("chat", sent=1),)  # the first probe told: no second
    assert cal.note == "chat: not calibrated: the server reports no usage.prompt_tokens"
    assert cal.warnings == (cal.note,)  # said even with --quiet
    skipped = calibrate_prompts((RequestClass(),), PromptOptions(), None, seed=0, skipped="--skip-preflight")
    assert skipped.note == "not calibrated (--skip-preflight): one word per token, no overhead"


def test_a_given_overhead_sends_no_probe() -> None:
    def never(_kind: RequestKind, _p: str, _e: Mapping[str, object]) -> tuple[int | None, str | None]:
        raise AssertionError("probed")

    cal = calibrate_prompts((RequestClass(),), PromptOptions(overhead=30), never, seed=0)
    assert cal.fits == (KindFit("chat", 1.0, 30.0, "given"),)
    assert (
        RequestFactory(ENDPOINT, (RequestClass(prompt_tokens=256),), 0, cal).make(0).body.count(b" ") == 225
    )


def test_dataset_classes_are_not_calibrated_and_ask_no_length(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "hello there"}\n')
    cls = RequestClass(dataset=str(data))
    assert calibrate_prompts((cls,), PromptOptions(), sim_counter(TokenRule()), seed=0).fits == ()
    assert RequestFactory(ENDPOINT, (cls,), 0).make(0).asked_prompt_tokens is None


def test_uncalibrated_prompts_are_those_of_runs_before_the_calibration() -> None:
    """No calibration in the spec (every run made before it): N words for N asked tokens, the same words."""
    cls = RequestClass(prompt_tokens=50, shared_prefix_tokens=8)
    old = RequestFactory(ENDPOINT, (cls,), 9).make(4)
    new = RequestFactory(ENDPOINT, (cls,), 9, PromptCalibration()).make(4)
    assert old == new
    prompt = orjson.loads(old.body)["messages"][0]["content"]
    assert len(prompt.split()) == 58 and old.asked_prompt_tokens == 58


def test_the_shared_prefix_scales_with_tokens_per_word_and_stays_shared() -> None:
    cal = PromptCalibration((KindFit("chat", 0.5, 10.0, "fitted"),))
    factory = RequestFactory(ENDPOINT, (RequestClass(prompt_tokens=100, shared_prefix_tokens=20),), 0, cal)
    a, b = (orjson.loads(factory.make(s).body)["messages"][0]["content"].split() for s in (1, 2))
    assert len(a) == len(b) == 220  # (120 − 10) / 0.5
    assert a[:40] == b[:40] and a[40:] != b[40:]  # 20 tokens of prefix = 40 words, identical


def test_the_calibration_round_trips_through_the_spec() -> None:
    cal = PromptCalibration(
        (KindFit("chat", 1.25, 30.0, "fitted", ((16, 50), (256, 350)), (256, 256)),),
        words=("the", "of"),
        tokenizer="tok",
        tokenizer_file="/x/tokenizer.json",
        note="n",
    )
    spec = RunSpec(
        run_id="r",
        name="n",
        out_dir="o",
        endpoint=ENDPOINT,
        request_classes=(RequestClass(),),
        stages=(Stage(kind="concurrency", users=1, duration_s=1.0),),
        prompts=cal,
    )
    data = orjson.loads(orjson.dumps(spec.to_public_dict()))
    assert RunSpec.from_dict(data) == spec
    old = spec.to_public_dict()
    del old["prompts"]
    assert RunSpec.from_dict(old).prompts is None  # a spec written before the calibration
    assert "prompts" not in RunSpec.from_dict(old).to_public_dict()


def test_the_simulator_token_rule() -> None:
    rule = TokenRule(tokens_per_word=1.25, template_tokens=30)
    assert rule.chat([{"role": "user", "content": "a b c d"}]) == 5 + 30
    assert rule.chat([{"role": "user", "content": "a b c d e f"}]) == 8 + 30  # 7.5 rounds half up
    assert split_inputs("a b c", "prompt", rule) == [("a b c", 4)]  # 3.75; no template outside chat
    assert split_inputs([1, 2, 3], "prompt", rule) == [("[1, 2, 3]", 3)]  # ids are counted as they are
    assert (
        TokenRule().chat([{"role": "user", "content": "Hello, world!"}]) == count_tokens("Hello, world!") == 4
    )


# --- --tokenizer, with a BPE trained here on a corpus where some prompt words are frequent and others rare ---

FREQUENT = WORDS[:40]


def train_tokenizer(path: Path) -> Path:
    """A byte-level BPE whose vocabulary makes the 40 first prompt words one token each (after a space too) and
    leaves the others several tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rng = random.Random(0)
    lines = [" ".join(rng.choices(FREQUENT, k=40)) for _ in range(400)]
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(lines, trainer)
    out = path / "tokenizer.json"
    tokenizer.save(str(out))
    return out


def test_one_token_words_of_a_trained_tokenizer_are_exact(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(train_tokenizer(tmp_path))
    words = one_token_words(tokenizer, "trained")
    assert set(words) == {
        w for w in WORDS if len(tokenizer.encode(w).ids) == 1 and len(tokenizer.encode(" " + w).ids) == 1
    }
    assert set(FREQUENT) <= set(words) and len(words) < len(WORDS)
    cal = PromptCalibration((KindFit("chat", 1.0, 0.0, "tokenizer"),), words=words)
    factory = RequestFactory(
        ENDPOINT, (RequestClass(prompt_tokens={"dist": "uniform", "min": 1, "max": 700}),), 5, cal
    )
    for seq in range(100):
        request = factory.make(seq)
        prompt = orjson.loads(request.body)["messages"][0]["content"]
        assert len(tokenizer.encode(prompt).ids) == request.asked_prompt_tokens


def test_a_tokenizer_with_too_few_one_token_words_is_refused(tmp_path: Path) -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(["the of and"] * 50, trainer)
    with pytest.raises(ConfigError, match=r"only \d+ of the prompt words are one token"):
        one_token_words(tokenizer, "tiny")


def test_resolve_tokenizer_finds_local_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = train_tokenizer(tmp_path)
    assert resolve_tokenizer(str(path)) == path
    assert resolve_tokenizer(str(tmp_path)) == path
    cache = tmp_path / "hub"
    snapshot = cache / "models--Org--Tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_bytes(path.read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert resolve_tokenizer("Org/Tiny") == snapshot / "tokenizer.json"
    with pytest.raises(
        ConfigError, match=r"--tokenizer Org/Other: not a tokenizer.json file .* nothing is downloaded"
    ):
        resolve_tokenizer("Org/Other")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"the folder has no tokenizer\.json"):
        resolve_tokenizer(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"--tokenizer needs a tokenizer\.json path"):
        resolve_tokenizer(" ")  # not the current folder
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a tokenizer file"):
        load_tokenizer(tmp_path / "bad.json")


# --- asked vs served ---


def frame(rows: Sequence[tuple[str | None, str, int | None, int | None, bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_class": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "asked_prompt_tokens": pd.array([r[2] for r in rows], dtype="Int64"),
            "prompt_tokens": pd.array([r[3] for r in rows], dtype="Int64"),
            "ok": [r[4] for r in rows],
        }
    )


def test_input_lengths_per_class_and_stage() -> None:
    rows = [
        ("chat", "s1", 100, 100, True),
        ("chat", "s1", 100, 110, True),
        ("chat", "s2", 200, 240, True),
        ("chat", "s2", 200, None, True),  # no usage
        ("chat", "s2", 200, 900, False),  # failed: not counted
        ("rag", "s2", 1000, 1000, True),
    ]
    lengths = input_lengths(frame(rows), ["s1", "s2"])
    by = {(g.scope, g.name): g for g in lengths.groups}
    chat = by[("class", "chat")]
    assert (chat.requests, chat.without_usage, chat.asked, chat.served) == (3, 1, 400 / 3, 450 / 3)
    assert chat.deviation == pytest.approx(50 / 400)
    assert (chat.p5, chat.p95) == pytest.approx(tuple(np.percentile([0.0, 0.1, 0.2], [5, 95])))
    assert chat.flagged
    assert by[("class", "rag")].deviation == 0.0 and not by[("class", "rag")].flagged
    assert by[("stage", "s1")].deviation == pytest.approx(0.05) and not by[("stage", "s1")].flagged
    assert by[("stage", "s2")].deviation == pytest.approx(40 / 1200)
    assert [g.name for g in lengths.groups] == ["chat", "rag", "s1", "s2"]
    assert lengths.summary().startswith(
        "served input length off the asked by more than ±5%: class chat +12.5%"
    )


def test_input_lengths_of_old_runs_and_servers_without_usage() -> None:
    old = frame([("chat", "s1", None, 100, True)])
    assert (
        input_lengths(old).summary() == "no asked lengths recorded (datasets, or a run made before they were)"
    )
    none = input_lengths(frame([("chat", "s1", 100, None, True)]))
    assert (
        not none.measured and none.summary() == "the server reported no usage: the served lengths are unknown"
    )
    assert input_lengths(old.drop(columns="asked_prompt_tokens")).groups == ()


def test_a_length_below_the_servers_template_is_warned_about_before_the_run() -> None:
    rule = TokenRule(tokens_per_word=1.25, template_tokens=30)
    classes = (RequestClass(name="short", prompt_tokens=10), RequestClass(name="long", prompt_tokens=256))
    cal = calibrate_prompts(classes, PromptOptions(), sim_counter(rule, []), seed=3)
    assert cal.warnings == (
        "short: prompts asked at 10 tokens cannot be that short here: the server's chat template alone counts 30 "
        "tokens, so they will be served at about 31",
    )
    given = calibrate_prompts(classes[:1], PromptOptions(overhead=12), None, seed=3)
    assert given.warnings == (
        "short: prompts asked at 10 tokens cannot be that short here: the server's chat template alone counts 12 "
        "tokens, so they will be served at about 13",
    )
    mixed = (RequestClass(), RequestClass(name="c", kind="completions", prompt_tokens=10))
    assert calibrate_prompts(mixed, PromptOptions(overhead=12), None, seed=3).fits == (
        KindFit("chat", 1.0, 12.0, "given"),
        KindFit("completions", 1.0, 0.0, "given"),  # no chat template: the prompt is sent as it is
    )
    exact = calibrate_prompts(classes[1:], PromptOptions(), sim_counter(rule, []), seed=3)
    assert exact.warnings == () and exact.note is None


def test_input_lengths_leave_a_record_without_a_class_out_of_the_classes() -> None:
    rows = [
        ("chat", "s1", 100, 110, True),
        (None, "s1", 100, 120, True),  # a record naming no class: in its stage, in no class
        ("rag", "s2", 100, 100, True),
        (None, "s2", 100, 140, True),
    ]
    lengths = input_lengths(frame(rows).astype({"request_class": "category", "stage": "category"}), ["s2"])
    assert [(g.scope, g.name, g.requests) for g in lengths.groups] == [
        ("class", "chat", 1),
        ("class", "rag", 1),
        ("stage", "s2", 2),
        ("stage", "s1", 2),
    ]
    assert lengths.groups[2].deviation == pytest.approx(40 / 200)
