"""A dead endpoint: the back-off schedule and the abort window, with the records' own times (no clock, no sleep)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from loadtest.client.protocol import EndpointSpec
from loadtest.client.records import dump_record
from loadtest.engine.conduct import Recorder
from loadtest.engine.health import Abort, AbortWatch, Backoff, backs_off, outcome_of
from loadtest.rundir import read_events, run_failure
from tests.helpers import BASE

Result = tuple[int | None, str | None]
REFUSED: Result = (None, "connection")
NO_HEADERS: Result = (None, "timeout")
HTTP_503: Result = (503, "server_error")
OK: Result = (200, None)


@pytest.mark.parametrize(
    ("status", "error_class", "outcome"),
    [
        (None, "connection", "unreachable"),
        (None, "timeout", "unreachable"),
        (200, "timeout", "answered"),  # a stream that went silent: the endpoint answered
        (200, "stream_cut", "answered"),
        (429, "rate_limited", "answered"),
        (404, "client_error", "answered"),
        (500, "server_error", "server_error"),
        (503, "server_error", "server_error"),
        (None, "cancelled", "ignored"),
        (200, "cancelled", "ignored"),
        (200, None, "answered"),
    ],
)
def test_what_a_record_says_about_the_endpoint(
    status: int | None, error_class: str | None, outcome: str
) -> None:
    assert outcome_of(status, error_class) == outcome


def test_backoff_doubles_from_50ms_to_the_2s_cap_with_at_least_half_the_nominal_wait() -> None:
    low = Backoff(lambda: 0.0)
    assert [low.after(*REFUSED) for _ in range(8)] == [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    high = Backoff(lambda: 0.999)
    assert high.after(*REFUSED) == pytest.approx(0.05 * 0.9995)
    mid = Backoff(lambda: 0.5)
    assert [mid.after(*NO_HEADERS) for _ in range(7)] == pytest.approx(
        [0.0375, 0.075, 0.15, 0.3, 0.6, 1.2, 1.5]
    )


def test_backoff_resets_on_any_answer_and_ignores_the_rest() -> None:
    backoff = Backoff(lambda: 0.0)
    assert [backoff.after(*REFUSED) for _ in range(3)] == [0.025, 0.05, 0.1]
    assert backoff.after(None, "cancelled") == 0.0  # the run stopping says nothing: the count stays
    assert backoff.after(*REFUSED) == 0.2
    assert backoff.after(*HTTP_503) == 0.0  # a 5xx is an answer: no back-off, and the count starts over
    assert backoff.after(*REFUSED) == 0.025
    assert backoff.after(*OK) == 0.0
    assert backoff.failures == 0


@pytest.mark.parametrize(
    ("status", "error_class", "open_loop", "closed_loop"),
    [
        (None, "connection", True, True),
        (None, "timeout", True, True),
        (429, "rate_limited", False, True),  # answered at once: a closed loop would send again at once
        (500, "server_error", False, True),
        (503, "server_error", False, True),
        (200, "server_error", False, False),  # an error event mid-stream: the endpoint served for a while
        (200, "stream_cut", False, False),
        (200, "timeout", False, False),
        (404, "client_error", False, False),
        (200, None, False, False),
        (None, "cancelled", False, False),
        (429, "cancelled", False, False),
    ],
)
def test_who_backs_off(
    status: int | None, error_class: str | None, open_loop: bool, closed_loop: bool
) -> None:
    assert backs_off(status, error_class, closed_loop=False) is open_loop
    assert backs_off(status, error_class, closed_loop=True) is closed_loop


def test_a_closed_loop_backs_off_from_429s_and_5xx_until_another_answer() -> None:
    backoff = Backoff(lambda: 0.0)
    assert [backoff.after(429, "rate_limited", True) for _ in range(3)] == [0.025, 0.05, 0.1]
    assert backoff.after(503, "server_error", True) == 0.2  # the same streak: refusals of either kind
    assert backoff.after(*REFUSED, True) == 0.4
    assert backoff.after(200, "stream_cut", True) == 0.0  # an answer that is not a refusal starts it over
    assert backoff.after(429, "rate_limited", True) == 0.025
    assert backoff.after(429, "rate_limited", False) == 0.0  # open loop: arrivals set the pace
    assert backoff.failures == 0


def test_a_503_that_says_when_to_come_back_is_waited_out_up_to_the_cap() -> None:
    """A 503 with Retry-After (an endpoint scaling up from zero): wait what it says, at most 2 s; no count."""
    backoff = Backoff(lambda: 0.0)
    assert backoff.after(*REFUSED) == 0.025
    assert backoff.after(503, "server_error", retry_after_s=1.0) == 1.0
    assert backoff.failures == 0  # an answer: the unreachable count starts over
    assert (
        backoff.after(503, "server_error", retry_after_s=15.0) == 2.0
    )  # capped: the user stays responsive to its stage
    assert (
        backoff.after(503, "server_error", retry_after_s=None) == 0.0
    )  # no Retry-After: an answer like any other
    assert backoff.after(500, "server_error", retry_after_s=5.0) == 0.0  # only a 503 means "come back then"
    assert (
        backoff.after(429, "rate_limited", retry_after_s=5.0) == 0.0
    )  # 429s are the [retry] policy's business


def test_a_cold_start_answering_503_stops_a_run_only_when_it_outlasts_abort_after() -> None:
    """A user against an endpoint scaling up from zero for ``cold_s``: 503 with Retry-After (the remaining whole
    seconds), waited out for at most 2 s, until an answer. The 5xx streak stops the run once a 503 ends
    ``abort_after`` after the first began: cold-start.toml sets abort_after far above any cold start."""

    def burst(after_s: float, cold_s: float) -> Abort | None:
        watch, backoff, t = AbortWatch(after_s), Backoff(lambda: 0.0), 0.0
        while t < cold_s:
            found = watch.observe(
                503, "server_error", t, t + 0.01, "burst", "HTTP 503: TEMPORARILY_UNAVAILABLE"
            )
            if found is not None:
                return found
            t += 0.01 + backoff.after(503, "server_error", retry_after_s=float(math.ceil(cold_s - t - 0.01)))
        return watch.observe(200, None, t, t + 0.5, "burst")

    stopped = burst(10.0, 15.0)  # the default bound, a 15 s cold start: 503s at 0, 2.01, ... 10.05
    assert stopped is not None and stopped.kind == "server_error"
    assert (stopped.since, stopped.at, stopped.failures) == (0.0, pytest.approx(10.06), 6)
    assert burst(900.0, 15.0) is None  # the scenario's 15 minutes: the first answer ends the streak
    assert burst(10.0, 1.5) is None  # a cold start shorter than the bound never stops a run


def test_backoff_never_overflows() -> None:
    backoff = Backoff(lambda: 0.0)
    for _ in range(5000):
        wait = backoff.after(*REFUSED)
    assert wait == 1.0


def refused_every(watch: AbortWatch, start: float, every: float, until: float) -> Abort | None:
    """Refused requests (1 ms each) every ``every`` seconds from ``start``: the first abort, or None."""
    t = start
    while t <= until:
        found = watch.observe(
            *REFUSED, t, t + 0.001, "concurrency@16", "connection failed: ConnectionRefusedError"
        )
        if found is not None:
            return found
        t = round(t + every, 6)
    return None


def test_an_endpoint_refusing_for_the_window_stops_the_run_at_the_first_request_past_it() -> None:
    watch = AbortWatch(10.0)
    assert watch.observe(*OK, 99.0, 99.5) is None
    found = refused_every(watch, 100.0, 0.5, 200.0)
    assert found == Abort(
        kind="unreachable",
        since=100.0,
        at=110.001,
        stage="concurrency@16",
        after_s=10.0,
        failures=21,
        detail="connection failed: ConnectionRefusedError",
    )
    assert found.reason(lambda t: f"T{t:g}") == (
        "endpoint unreachable for 10 s from T100 (stage concurrency@16: 21 requests, every one failed to connect or "
        "got no response; last: connection failed: ConnectionRefusedError)"
    )


def test_an_answer_inside_the_window_starts_it_again() -> None:
    watch = AbortWatch(10.0)
    assert refused_every(watch, 100.0, 0.5, 108.0) is None
    assert watch.observe(429, "rate_limited", 108.2, 108.3) is None  # a quota's 429: the endpoint is alive
    found = refused_every(watch, 108.5, 0.5, 200.0)
    assert found is not None and (found.since, found.at, found.failures) == (108.5, 118.501, 21)


def test_stray_failures_among_successes_never_stop_a_run() -> None:
    watch = AbortWatch(1.0)
    for i in range(10_000):
        t = i * 0.01
        status, error_class = REFUSED if i % 3 == 0 else HTTP_503 if i % 3 == 1 else OK
        assert watch.observe(status, error_class, t, t + 0.005) is None


def test_a_request_that_got_no_response_for_the_window_is_the_evidence() -> None:
    watch = AbortWatch(10.0)
    assert watch.observe(*OK, 95.0, 98.0) is None
    # a connect timeout: started at 97, no answer by 107 — but the endpoint answered until 98
    assert watch.observe(*NO_HEADERS, 97.0, 107.0) is None
    found = watch.observe(*NO_HEADERS, 107.5, 117.5)
    assert found is not None and (found.kind, found.since, found.at, found.failures) == (
        "unreachable",
        98.0,
        117.5,
        2,
    )


def test_a_late_answer_that_ended_before_the_streak_does_not_reset_it() -> None:
    watch = AbortWatch(2.0)
    assert watch.observe(*REFUSED, 10.0, 10.1) is None
    assert watch.observe(*OK, 8.0, 9.9) is None  # another worker's batch, arriving late
    found = watch.observe(*REFUSED, 12.0, 12.1)
    assert found is not None and found.since == 10.0


def test_every_request_answering_5xx_for_the_window_stops_it_and_refusals_do_not_break_that_streak() -> None:
    watch = AbortWatch(5.0)
    assert watch.observe(*OK, 0.0, 1.0) is None
    assert watch.observe(*HTTP_503, 1.0, 1.01, "s", "HTTP 503: overloaded") is None
    assert watch.observe(*REFUSED, 3.0, 3.01) is None  # neither an answer nor a 5xx
    assert watch.observe(*HTTP_503, 4.0, 4.01, "s", "HTTP 503: overloaded") is None
    found = watch.observe(*HTTP_503, 6.0, 6.01, "s", "HTTP 503: overloaded")
    assert found == Abort("server_error", 1.0, 6.01, "s", 5.0, 3, "HTTP 503: overloaded")
    assert found.reason(lambda t: "12:00:01") == (
        "endpoint failing for 5 s from 12:00:01 (stage s: 3 requests, every one answered with a 5xx; "
        "last: HTTP 503: overloaded)"
    )


def test_a_5xx_streak_ends_with_any_other_answer_and_a_5xx_ends_an_unreachable_one() -> None:
    watch = AbortWatch(5.0)
    assert watch.observe(*HTTP_503, 0.0, 0.1) is None
    assert watch.observe(404, "client_error", 3.0, 3.1) is None  # an answer, not a 5xx: the streak is over
    assert watch.observe(*HTTP_503, 5.5, 5.6) is None  # a new streak from 5.5
    assert watch.observe(*REFUSED, 6.0, 6.1) is None
    assert watch.observe(*HTTP_503, 7.0, 7.1) is None  # the endpoint answered: the refusals' streak is over
    assert watch.observe(*REFUSED, 11.0, 11.5) is None  # a new one from 11.0
    found = watch.observe(*HTTP_503, 10.4, 10.6)  # ended before 11.0: leaves the refusals' streak alone
    assert found is not None and (found.kind, found.since, found.at, found.failures) == (
        "server_error",
        5.5,
        10.6,
        3,
    )
    assert watch.observe(*REFUSED, 15.0, 16.0) == Abort("unreachable", 11.0, 16.0, None, 5.0, 2, None)


def test_cancelled_records_are_ignored() -> None:
    watch = AbortWatch(1.0)
    assert watch.observe(*REFUSED, 0.0, 0.1) is None
    assert watch.observe(200, "cancelled", 0.5, 2.0) is None
    assert watch.observe(None, "cancelled", 0.5, 2.0) is None
    found = watch.observe(*REFUSED, 1.0, 1.1)
    assert found is not None and found.failures == 2


def test_the_recorder_writes_the_event_once_and_calls_for_the_stop(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "test")
    rec.watch = AbortWatch(1.0)
    stops: list[Abort] = []
    rec.on_abort = stops.append
    lines = [
        dump_record(
            replace(
                BASE,
                seq=i,
                started_at=100.0 + i * 0.25,
                ended_at=100.0 + i * 0.25 + 0.001,
                first_token_at=None,
                last_token_at=None,
                status=None,
                error_class="connection",
                error_detail="connection failed: ConnectionRefusedError",
                output_tokens=None,
                chunk_gaps=None,
            )
        )
        for i in range(8)
    ]
    rec.write(b"".join(lines))
    rec.close()
    assert rec.records == 8  # every record is kept, also those after the decision
    assert len(stops) == 1 and (stops[0].since, stops[0].at, stops[0].failures) == (100.0, 101.001, 5)
    events = read_events(tmp_path)
    assert [e["event"] for e in events] == ["run_aborted"]
    failure = run_failure(events)
    assert failure is not None
    assert (failure.kind, failure.since, failure.at, failure.after_s, failure.stage) == (
        "unreachable",
        100.0,
        101.001,
        1.0,
        BASE.stage,
    )
    assert failure.reason.startswith("endpoint unreachable for 1 s from ")
    assert orjson.loads((tmp_path / "records.jsonl").read_bytes().splitlines()[-1])["seq"] == 7


FAILURE = {
    "kind": "unreachable",
    "reason": "endpoint unreachable for 10 s from 12:00:08 (stage s1: 190 requests, every one failed to connect or "
    "got no response; last: connection failed: ConnectionRefusedError)",
    "since": 1000.5,
    "at": 1010.75,
    "after_s": 10.0,
    "stage": "s1",
}


def test_the_failure_goes_into_the_manifest_and_back_byte_for_byte_and_makes_the_run_invalid(
    tmp_path: Path,
) -> None:
    import pandas as pd

    from analysis.validity import Problem, assess
    from loadtest.rundir import RunFailure, read_manifest
    from tests.helpers import manifest_dict

    raw = manifest_dict(status="failed", failure=FAILURE)
    raw["spec"]["abort_after_s"] = 10.0
    data = orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (tmp_path / "manifest.json").write_bytes(data)
    manifest = read_manifest(tmp_path)
    assert manifest.failure == RunFailure(**FAILURE)  # type: ignore[arg-type]
    assert manifest.spec.abort_after_s == 10.0
    assert manifest.to_json() == data
    validity = assess(manifest, [], [], pd.DataFrame({"ok": [False], "error_class": ["connection"]}), 0, None)
    assert validity.problems == (Problem(None, f"the run was stopped: {FAILURE['reason']}"),)
    del raw["failure"], raw["spec"]["abort_after_s"]  # a manifest from before: no failure, never stopped
    (tmp_path / "manifest.json").write_bytes(
        orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    before = read_manifest(tmp_path)
    assert before.failure is None and before.spec.abort_after_s is None
    assert b"failure" not in before.to_json() and b"abort_after_s" not in before.to_json()


@pytest.mark.parametrize(
    ("toml", "flag", "expected"),
    [
        ("", None, 10.0),
        ('abort_after = "3s"\n', None, 3.0),
        ('abort_after = "off"\n', None, None),
        ("abort_after = 0\n", None, None),
        ('abort_after = "3s"\n', "off", None),
        ('abort_after = "off"\n', "1m", 60.0),
        ("", "0", None),
    ],
)
def test_abort_after_from_the_scenario_and_the_flag(
    toml: str, flag: str | None, expected: float | None
) -> None:
    import tomllib

    from loadtest.cli.options import abort_after
    from loadtest.spec.assemble import Overrides, apply_overrides, scenario_from_flags
    from loadtest.spec.scenario import parse_scenario

    scenario = parse_scenario(tomllib.loads(f"[load]\nconcurrency = [1]\n{toml}"))
    changed = apply_overrides(scenario, Overrides(abort_after_s=abort_after(flag, "--abort-after")))
    assert changed.abort_after_s == expected
    spec = changed.run_spec(run_id="r", out_dir="o", endpoint=EndpointSpec("http://x/v1", "m"), read_timeout_s=1.0,
                            simulated=False)  # fmt: skip
    assert spec.abort_after_s == expected
    flags_only = scenario_from_flags(Overrides(abort_after_s=abort_after(flag, "--abort-after")))
    assert flags_only.abort_after_s == (10.0 if flag is None else expected)


@pytest.mark.parametrize(
    ("value", "message"), [("soon", "--abort-after: invalid duration 'soon'"), ("-1s", "")]
)
def test_a_bad_abort_after_is_one_line(value: str, message: str) -> None:
    from loadtest.cli.options import abort_after
    from loadtest.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--abort-after: ") as err:
        abort_after(value, "--abort-after")
    assert str(err.value).startswith(message)


def test_a_bad_abort_after_in_a_scenario_is_one_line() -> None:
    import tomllib

    from loadtest.errors import ConfigError
    from loadtest.spec.scenario import parse_scenario

    with pytest.raises(ConfigError, match=r"^load\.abort_after: invalid duration 'soon'"):
        parse_scenario(tomllib.loads('[load]\nconcurrency = 1\nabort_after = "soon"\n'))
    with pytest.raises(ConfigError, match=r"^load\.abort_after: "):
        parse_scenario(tomllib.loads("[load]\nconcurrency = 1\nabort_after = true\n"))
