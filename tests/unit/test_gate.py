"""The gate on hand-built runs with known answers: thresholds, scopes, the ratio interval and the noise floor, the
verdict's precedence, and the outputs (JUnit XML validated against Jenkins' schema, Markdown, JSON)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import xmlschema
from scipy import stats  # type: ignore[import-untyped]

from analysis import load_run
from analysis.frame import RunData
from analysis.gate import JOINT_CONFIDENCE, gate, noise_floors
from analysis.stage_points import percentile_ci
from analysis.validity import Problem, Validity
from loadtest.errors import ConfigError
from loadtest.spec.slo_flags import parse_regressions, parse_thresholds
from reports.gate_output import gate_json, gate_junit, gate_markdown, gate_table, verdict_line
from tests.helpers import manifest_dict, write_rows_run

SCHEMA = Path(__file__).parent / "data" / "junit-10.xsd"
VALID = Validity(())
OUT = 11  # output tokens per request: TPOT = (E2E − TTFT) / 10


def rows(
    label: str, ttft: np.ndarray, tpot: np.ndarray, gap: float = 0.1, failed: int = 0, cls: str = "chat"
) -> list[dict[str, Any]]:
    """One request every ``gap`` seconds with the given TTFTs and TPOTs; the first ``failed`` fail."""
    out = []
    for i, (first, per_token) in enumerate(zip(ttft, tpot, strict=True)):
        start = 1000.0 + i * gap
        bad = i < failed
        out.append(
            {
                "stage": label,
                "request_class": cls,
                "scheduled_at": start,
                "started_at": start,
                "first_token_at": None if bad else start + float(first),
                "ended_at": start + float(first) + float(per_token) * (OUT - 1),
                "error_class": "http_5xx" if bad else None,
                "error_detail": "boom" if bad else None,
                "output_tokens": None if bad else OUT,
                "client_output_tokens": None if bad else OUT,
                "token_source": None if bad else "usage",
                "chunk_gaps": None,
                "retry_after_s": None,
            }
        )
    return out


def make_run(
    tmp_path: Path, name: str, body: list[dict[str, Any]], labels: tuple[str, ...] = ("s1",), **slo: float
) -> RunData:
    manifest = manifest_dict(
        classes={"chat": dict(slo), "batch": {}},
        stage_labels=labels,
        stages=[{"label": label} for label in labels],
    )
    return load_run(write_rows_run(tmp_path / name, body, manifest, prompt_tokens=100))


def steps(n: int, low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, n)


@pytest.fixture
def hundred(tmp_path: Path) -> RunData:
    """s1: 100 requests, TTFT 0.01 … 1.00 s (p95 = 0.9505 s), TPOT 20 ms, 3 of them failed (error rate 3 %)."""
    ttft = np.arange(1, 101) / 100
    return make_run(tmp_path, "hundred", rows("s1", ttft, np.full(100, 0.02), failed=3))


def only(result: Any) -> Any:
    assert len(result.checks) == 1
    return result.checks[0]


def test_a_percentile_threshold_is_judged_on_its_point_at_the_limit(tmp_path: Path) -> None:
    ttft = np.arange(1, 101) / 100
    data = make_run(tmp_path, "r", rows("s1", ttft, np.full(100, 0.02)))
    # numpy's linear p95 of 0.01 … 1.00: 0.95 + 0.05 × (0.96 − 0.95) = 0.9505
    at = only(gate(data, VALID, parse_thresholds(["ttft_p95<951ms"])))
    assert at.current.value == pytest.approx(0.9505) and at.verdict == "pass"
    _, low, high = percentile_ci(ttft, 95)
    assert low is not None and high is not None
    assert (at.current.low, at.current.high) == (pytest.approx(low), pytest.approx(high))
    assert low <= 0.9505 <= high
    assert only(gate(data, VALID, parse_thresholds(["ttft_p95<950ms"]))).verdict == "fail"


def test_error_rate_goodput_and_throughput(hundred: RunData) -> None:
    checks = gate(
        hundred,
        VALID,
        parse_thresholds(
            ["error_rate<3%", "ttft_p50<500ms", "goodput>=48%", "output_tok_per_s>=100", "req_per_s>=10"]
        ),
    ).checks
    by = {c.metric: c for c in checks}
    assert by["error_rate"].current.value == pytest.approx(0.03) and by["error_rate"].verdict == "pass"
    ci = stats.binomtest(3, 100).proportion_ci(0.95)
    assert (by["error_rate"].current.low, by["error_rate"].current.high) == (
        pytest.approx(ci.low),
        pytest.approx(ci.high),
    )
    # good: succeeded (requests 4 … 100) and TTFT ≤ 0.5 s (the gate's latency threshold): 0.04 … 0.50 → 47 of 100
    assert by["attainment"].current.value == pytest.approx(0.47) and by["attainment"].verdict == "fail"
    # a closed stage's rate is over first start (1000.0) → last end (1009.9 + 1.00 + 0.2 = 1011.1): 11.1 s
    span = 9.9 + 1.0 + 0.2
    assert by["output_tok_per_s"].current.value == pytest.approx(97 * OUT / span)
    assert by["output_tok_per_s"].verdict == "fail"  # 96.1/s < 100/s
    assert by["req_per_s"].current.value == pytest.approx(97 / span) and by["req_per_s"].verdict == "fail"
    assert gate(hundred, VALID, parse_thresholds(["error_rate<2.9%"])).verdict == "fail"


def test_scopes_select_a_stage_or_a_class_and_name_what_exists(tmp_path: Path) -> None:
    fast, slow = np.full(400, 0.1), np.full(400, 0.9)
    body = rows("s1", fast, np.full(400, 0.02)) + rows("s2", slow, np.full(400, 0.02))
    body += rows("s2", np.full(400, 0.3), np.full(400, 0.02), cls="batch")
    data = make_run(tmp_path, "r", body, labels=("s1", "s2"))
    every = gate(data, VALID, parse_thresholds(["ttft_p95<500ms"]))
    assert [(c.stage, c.verdict) for c in every.checks] == [("s1", "pass"), ("s2", "fail")]
    assert only(gate(data, VALID, parse_thresholds(["s1:ttft_p95<500ms"]))).verdict == "pass"
    batch = gate(data, VALID, parse_thresholds(["batch:ttft_p95<500ms"]))
    # batch has no request in s1: nothing succeeded there, which fails a latency threshold
    assert [(c.stage, c.verdict, c.current.value) for c in batch.checks] == [
        ("s1", "fail", None),
        ("s2", "pass", pytest.approx(0.3)),
    ]
    with pytest.raises(ConfigError, match=r"'s3' is neither a class \(chat, batch\) nor a stage \(s1, s2\)"):
        gate(data, VALID, parse_thresholds(["s3:ttft_p95<1s"]))


def test_too_few_samples_for_a_percentile_make_the_run_invalid_not_a_pass(tmp_path: Path) -> None:
    # a p99's 95 % upper bound needs the sample's 1 − 0.99ⁿ ≥ 0.975: n ≥ 368
    data = make_run(tmp_path, "r", rows("s1", np.full(300, 0.1), np.full(300, 0.02)))
    result = gate(data, VALID, parse_thresholds(["ttft_p99<1s", "ttft_p50<1s"]))
    assert [c.verdict for c in result.checks] == ["invalid", "pass"] and result.verdict == "invalid"
    assert "too few samples for a p99: 300" in (result.checks[0].note or "")
    enough = make_run(tmp_path, "r2", rows("s1", np.full(400, 0.1), np.full(400, 0.02)))
    assert gate(enough, VALID, parse_thresholds(["ttft_p99<1s"])).verdict == "pass"


def test_validity_problems_count_only_for_the_stages_gated(tmp_path: Path) -> None:
    body = rows("s1", np.full(400, 0.1), np.full(400, 0.02)) + rows(
        "s2", np.full(400, 0.1), np.full(400, 0.02)
    )
    data = make_run(tmp_path, "r", body, labels=("s1", "s2"))
    validity = Validity((), (Problem("s2", "the generator did not keep up"),))
    assert gate(data, validity, parse_thresholds(["s1:ttft_p95<1s"])).verdict == "pass"
    result = gate(data, validity, parse_thresholds(["ttft_p95<1s"]))
    assert result.verdict == "invalid" and result.reasons() == ["s2: the generator did not keep up"]
    # an invalid run is never a fail, even with a threshold broken
    broken = gate(data, validity, parse_thresholds(["ttft_p95<50ms"]))
    assert broken.failed and broken.verdict == "invalid"
    assert (
        gate(
            data,
            Validity((), (Problem(None, "the run is interrupted"),)),
            parse_thresholds(["s1:ttft_p95<1s"]),
        ).verdict
        == "invalid"
    )


def tpot_runs(tmp_path: Path, factor: float) -> tuple[RunData, RunData, np.ndarray]:
    tpot = steps(400, 0.010, 0.011)
    base = make_run(tmp_path, "base", rows("s1", np.full(400, 0.1), tpot))
    current = make_run(tmp_path, "cur", rows("s1", np.full(400, 0.1), tpot * factor))
    return current, base, tpot


def test_a_regression_fails_only_when_the_ratio_interval_lies_beyond_the_limit(tmp_path: Path) -> None:
    current, base, tpot = tpot_runs(tmp_path, 1.2)
    check = only(gate(current, VALID, (), base, VALID, parse_regressions(["tpot_p50:+10%"])))
    # each run's p50 interval at √0.95; the ratio's: [low / base high, high / base low]
    _, b_low, b_high = percentile_ci(tpot, 50, JOINT_CONFIDENCE)
    _, c_low, c_high = percentile_ci(tpot * 1.2, 50, JOINT_CONFIDENCE)
    assert b_low is not None and b_high is not None and c_low is not None and c_high is not None
    assert check.ratio == pytest.approx(1.2)
    assert (check.ratio_low, check.ratio_high) == (
        pytest.approx(c_low / b_high),
        pytest.approx(c_high / b_low),
    )
    assert 1.1 < check.ratio_low < 1.2 and check.verdict == "fail"
    # the same change under a +25 % limit: the interval is not wholly above 1.25
    assert only(gate(current, VALID, (), base, VALID, parse_regressions(["tpot_p50:+25%"]))).verdict == "pass"
    # a noise floor widens the interval: low / (1 + f) ≤ 1.1 passes
    f = check.ratio_low / 1.1 - 1 + 1e-6
    widened = only(gate(current, VALID, (), base, VALID, parse_regressions(["tpot_p50:+10%"]), {"*": f}))
    assert widened.ratio_low == pytest.approx(check.ratio_low / (1 + f)) and widened.verdict == "pass"
    assert widened.noise_floor == f


def test_a_throughput_regression_needs_an_interval_wholly_below_the_limit(tmp_path: Path) -> None:
    # a request every 0.1 s, then every 0.125 s: 20 % fewer tokens per second, delivered evenly
    tpot = np.full(400, 0.01)
    base = make_run(tmp_path, "base", rows("s1", np.full(400, 0.1), tpot, gap=0.1))
    slower = make_run(tmp_path, "cur", rows("s1", np.full(400, 0.1), tpot, gap=0.125))
    check = only(gate(slower, VALID, (), base, VALID, parse_regressions(["output_tok_per_s:-10%"])))
    # over first start → last end: 399 gaps + one request of 0.1 + 10 × 0.01 s
    assert check.ratio == pytest.approx((400 * OUT / (399 * 0.125 + 0.2)) / (400 * OUT / (399 * 0.1 + 0.2)))
    assert check.ratio_high is not None and check.ratio_high < 0.9 and check.verdict == "fail"
    loose = only(gate(slower, VALID, (), base, VALID, parse_regressions(["output_tok_per_s:-25%"])))
    assert loose.verdict == "pass"
    better = only(gate(base, VALID, (), slower, VALID, parse_regressions(["output_tok_per_s:-10%"])))
    assert better.ratio is not None and better.ratio > 1.2 and better.verdict == "pass"


def test_stages_are_matched_by_label_and_a_missing_one_is_a_usage_error(tmp_path: Path) -> None:
    current, base, _ = tpot_runs(tmp_path, 1.0)
    other = make_run(tmp_path, "other", rows("s9", np.full(10, 0.1), np.full(10, 0.01)), labels=("s9",))
    with pytest.raises(ConfigError, match=r"stage 's1' is not in the baseline other \(its stages: s9\)"):
        gate(current, VALID, (), other, VALID, parse_regressions(["tpot_p50:+10%"]))
    result = gate(current, VALID, (), base, VALID)
    assert [c.text for c in result.checks] == ["ttft_p95:+10%", "tpot_p50:+10%", "output_tok_per_s:-10%"]
    assert result.verdict == "pass" and any("the defaults" in note for note in result.notes)
    bad_base = Validity((), (Problem("s1", "the planned load was not offered"),))
    assert gate(current, VALID, (), base, bad_base).reasons() == [
        "s1: the baseline: the planned load was not offered"
    ]


def test_noise_floors_make_every_a_a_pair_pass(tmp_path: Path) -> None:
    # two "A/A" runs 3 % apart: without a floor the gate calls that a regression beyond +1 %, with the floor
    # measured from them it does not
    a, b, _ = tpot_runs(tmp_path, 1.03)
    floors = noise_floors([a, b], ["tpot_p50"])
    check = only(gate(a, VALID, (), b, VALID, parse_regressions(["tpot_p50:+1%"])))
    assert check.verdict == "fail"
    assert floors["tpot_p50"] == pytest.approx(check.ratio_low - 1)
    assert gate(a, VALID, (), b, VALID, parse_regressions(["tpot_p50:+1%"]), floors).verdict == "pass"
    with pytest.raises(ConfigError, match="one is given twice"):
        noise_floors([a, a], ["tpot_p50"])
    with pytest.raises(ConfigError, match="at least two runs"):
        noise_floors([a], ["tpot_p50"])
    elsewhere = make_run(tmp_path, "other", rows("s9", np.full(400, 0.1), np.full(400, 0.01)), labels=("s9",))
    with pytest.raises(ConfigError, match="share no stage"):
        noise_floors([a, elsewhere], ["tpot_p50"])


def test_goodput_against_a_class_itl_limit_reads_the_gaps(tmp_path: Path) -> None:
    body = rows("s1", np.full(10, 0.1), np.full(10, 0.01))
    for n, row in enumerate(body):
        row["chunk_gaps"] = [0.01] * 10 if n < 7 else [0.01] * 9 + [0.5]  # 3 requests with one 500 ms gap
    data = make_run(tmp_path, "r", body, itl_p99=0.1)
    check = only(gate(data, VALID, parse_thresholds(["goodput>=70%"])))
    # a request's own p99 of its 10 gaps: 0.01 s, or 0.01 + 0.91 × 0.49 = 0.456 s for the three with a long gap
    assert check.current.value == pytest.approx(0.7) and check.verdict == "pass"


def test_nothing_to_gate_is_a_usage_error(tmp_path: Path) -> None:
    data = make_run(tmp_path, "r", rows("s1", np.full(10, 0.1), np.full(10, 0.01)))
    with pytest.raises(ConfigError, match="nothing to gate"):
        gate(data, VALID, ())
    with_slo = make_run(tmp_path, "r2", rows("s1", np.full(400, 0.1), np.full(400, 0.01)), ttft_p95=0.5)
    result = gate(with_slo, VALID, ())
    assert [c.text for c in result.checks] == ["chat:ttft_p95<500ms"] and result.verdict == "pass"


# -- outputs -------------------------------------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Any:
    current, base, _ = tpot_runs(tmp_path, 1.2)
    result = gate(
        current,
        VALID,
        parse_thresholds(["ttft_p95<500ms", "error_rate<1%"]),
        base,
        VALID,
        parse_regressions(["tpot_p50:+10%"]),
        {"*": 0.02},
        "configured: every metric 2.0%",
    )
    return result


def test_junit_validates_and_failures_carry_value_limit_and_interval(mixed: Any) -> None:
    xml = gate_junit(mixed)
    xmlschema.XMLSchema(str(SCHEMA)).validate(xml.decode())
    text = xml.decode()
    assert 'tests="3" failures="1" errors="0"' in text
    assert 'name="ttft_p95&lt;500ms [s1]" classname="loadtest.gate.threshold"' in text
    failure = re.search(r'<failure message="([^"]*)" type="regression">', text)
    assert failure is not None
    message = failure.group(1)
    assert (
        "vs baseline 10.5 ms" in message
        and "threshold ≤ +10.0 %" in message
        and "change +20.0 % [" in message
    )
    assert "noise floor of 2.0%" in message


def test_junit_of_an_invalid_run_has_errors_not_failures(tmp_path: Path) -> None:
    data = make_run(tmp_path, "r", rows("s1", np.full(50, 0.1), np.full(50, 0.01)))
    result = gate(
        data, Validity((), (Problem(None, "the run is interrupted"),)), parse_thresholds(["ttft_p99<1s"])
    )
    xml = gate_junit(result).decode()
    xmlschema.XMLSchema(str(SCHEMA)).validate(xml)
    assert 'tests="2" failures="0" errors="2"' in xml and "run validity" in xml
    assert verdict_line(result).startswith("gate: INVALID")


def test_markdown_json_and_table(mixed: Any) -> None:
    md = gate_markdown(mixed)
    assert md.startswith("### ❌ loadtest gate: FAIL — `cur` vs baseline `base`")
    assert "| ❌ | `tpot_p50:+10%` | `s1` |" in md and "`ttft_p95<500ms`" in md  # code is not entity-escaped
    body = orjson.loads(gate_json(mixed))
    assert body["format"] == 1 and body["verdict"] == "fail"
    assert [c["verdict"] for c in body["checks"]] == ["pass", "pass", "fail"]
    table = gate_table(mixed)
    assert "noise floor: configured: every metric 2.0%" in table
    assert table.rstrip().endswith("threshold ≤ +10.0 % (interval widened by a noise floor of 2.0%)")


def test_a_pipe_in_a_name_cannot_break_the_markdown_table(tmp_path: Path) -> None:
    data = make_run(tmp_path, "a|b", rows("s1", np.full(400, 0.1), np.full(400, 0.01)))
    md = gate_markdown(gate(data, VALID, parse_thresholds(["ttft_p95<1s"])))
    assert "`a\\|b`" in md


# -- what a newcomer's review found -------------------------------------------------------------------------------


def test_an_outage_against_a_baseline_fails_every_default_comparison(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", rows("s1", np.full(400, 0.1), np.full(400, 0.01)))
    dead = make_run(tmp_path, "dead", rows("s1", np.full(400, 0.1), np.full(400, 0.01), failed=400))
    result = gate(dead, VALID, (), base, VALID)
    assert [(c.metric, c.verdict) for c in result.checks] == [
        ("ttft_p95", "fail"),
        ("tpot_p50", "fail"),
        ("output_tok_per_s", "fail"),
    ]
    assert (
        result.checks[0].note
        == "this run: no successful request in the stage (the baseline measured it on 400)"
    )
    # nothing delivered is exactly 0 tok/s: the ratio's interval is [0, 0], not "too short to bound"
    assert (result.checks[2].ratio, result.checks[2].ratio_high) == (0.0, 0.0)


def test_a_default_the_baseline_cannot_have_is_skipped_and_a_given_one_refused(tmp_path: Path) -> None:
    # answers without output tokens (as embeddings have): the baseline delivered 0 output tokens per second
    body = rows("s1", np.full(400, 0.1), np.full(400, 0.01))
    for row in body:
        row["output_tokens"] = row["client_output_tokens"] = 0
    base, cur = make_run(tmp_path, "base", body), make_run(tmp_path, "cur", body)
    result = gate(cur, VALID, (), base, VALID)
    assert [c.metric for c in result.checks] == ["ttft_p95"]  # no TPOT and no output tokens to compare
    with pytest.raises(
        ConfigError, match="the baseline has no output_tok_per_s in stage 's1' to compare with"
    ):
        gate(cur, VALID, (), base, VALID, parse_regressions(["output_tok_per_s:-10%"]))


def test_names_with_control_characters_stay_on_their_line_and_in_valid_xml(tmp_path: Path) -> None:
    data = make_run(
        tmp_path,
        "r",
        rows("two\nlines\x01", np.full(400, 0.1), np.full(400, 0.01)),
        labels=("two\nlines\x01",),
    )
    result = gate(data, VALID, parse_thresholds(["ttft_p95<50ms"]))
    assert verdict_line(result).count("\n") == 0 and "two\\nlines\\x01" in verdict_line(result)
    xmlschema.XMLSchema(str(SCHEMA)).validate(gate_junit(result).decode())
    assert "two\\nlines\\x01" in gate_table(result) and "`two\\nlines\\x01`" in gate_markdown(result)


def test_markdown_escapes_markup_in_text_and_fences_code_with_backticks() -> None:
    from reports.gate_output import _code, _md

    assert _md("a|b&c<d>*e_[f]`g") == "a\\|b&amp;c&lt;d&gt;\\*e\\_\\[f\\]\\`g"
    assert _code("s`1") == "``s`1``" and _code("`x") == "`` `x ``" and _code("a|b") == "`a\\|b`"


def test_a_floor_for_every_metric_replaces_the_measured_ones(tmp_path: Path) -> None:
    from loadtest.cli.gate import GateOptions, prepare

    base = make_run(tmp_path, "base", rows("s1", np.full(10, 0.1), np.full(10, 0.01)))
    (base.run_dir / "noise.json").write_bytes(
        orjson.dumps({"format": 1, "runs": ["a", "b", "c"], "stages": ["s1"], "floors": {"tpot_p50": 0.0}})
    )
    measured = prepare(GateOptions(baseline=base.run_dir))
    assert measured.noise == {"tpot_p50": 0.0} and measured.noise_source is not None
    assert measured.noise_source.startswith("measured from 3 A/A runs")
    blanket = prepare(GateOptions(baseline=base.run_dir, noise_floor=("30%",)))
    assert blanket.noise == {"*": 0.3} and blanket.noise_source == "configured: every metric 30.0%"
    one = prepare(GateOptions(baseline=base.run_dir, noise_floor=("tpot_p50:5%",)))
    assert one.noise == {"tpot_p50": 0.05}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "is not a noise-floor file written by loadtest noise"),
        (b'{"format": 1, "floors": {"tpot_p50": 0.1}, "runs": 5}', "is not a noise-floor file"),
        (b'{"format": 1, "floors": {"tpot_p50": -1}, "runs": []}', "is not a noise-floor file"),
        (b"not json", "is not a noise-floor file (not JSON)"),
    ],
)
def test_a_file_that_is_not_a_noise_file_is_one_line(tmp_path: Path, body: bytes, message: str) -> None:
    from loadtest.cli.gate import read_noise

    path = tmp_path / "noise.json"
    path.write_bytes(body)
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_noise(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"noise_floor": ("tpto_p50:8%",)}, "'tpto_p50' is not a metric a comparison has"),
        ({"noise_floor": ("chat:tpot_p50:3%",)}, "'chat:tpot_p50' is not a metric a comparison has"),
        ({"noise_floor": ("lots",)}, "--noise-floor takes [METRIC:]N%"),
        ({"noise_floor": ("5%",)}, "--noise-floor needs --baseline RUN"),
        ({"noise": Path("n.json")}, "--noise needs --baseline RUN"),
        ({"max_regression": ("tpot_p50:+10%",)}, "--max-regression needs --baseline RUN"),
        ({"max_regression": ("output_tok_per_s:-100%",)}, "the change must be above 0 % and under 100%"),
    ],
)
def test_gate_options_are_checked_before_any_run(flags: dict[str, Any], message: str) -> None:
    from loadtest.cli.gate import GateOptions, prepare

    with pytest.raises(ConfigError, match=re.escape(message)):
        prepare(GateOptions(**flags))


def test_a_baseline_without_the_coming_runs_stages_is_refused_before_it_runs(tmp_path: Path) -> None:
    from loadtest.cli.gate import GateOptions, prepare

    base = make_run(tmp_path, "base", rows("s1", np.full(10, 0.1), np.full(10, 0.01)))
    with pytest.raises(
        ConfigError, match=r"it has no stage 's2' \(its stages: s1\); stages are matched by label"
    ):
        prepare(GateOptions(baseline=base.run_dir), stages=["s1", "s2"])
    # a comparison scoped to s1 needs only s1
    prepare(GateOptions(baseline=base.run_dir, max_regression=("s1:tpot_p50:+10%",)), stages=["s1", "s2"])
