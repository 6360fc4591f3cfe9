"""The HTML report from hand-made run directories: it parses and holds every section and chart, escapes hostile
text, renders byte-identically twice, refers to nothing outside itself, and says what a planner must know (the
verdict with its interval, the plan, what is doubtful)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from loadtest.spec.runspec import PlanRequest
from reports.html import collect_run, render_html
from reports.html.answer import answer_lines, plan_line
from reports.html.charts import _views
from reports.html.compare import key_figures
from tests.helpers import (
    BASE,
    jsonl,
    manifest_dict,
    records,
    run_cli,
    stage_rows,
    two_stage_run,
    write_rows_run,
    write_run,
)

HOSTILE = "<script>alert(1)</script></table><img src=x onerror=alert(2)> $\\foo{$ price $5 and $6"
SIM = {"architecture": "llama-3.1-8b", "gpu": "h100", "chunks": 1}


class _Page(HTMLParser):
    """Every start tag with its attributes, the ids, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        found = dict(attrs).get("id")
        if found:
            self.ids.append(found)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: str) -> _Page:
    page = _Page()
    page.feed(document)
    page.close()
    return page


def text_of(document: str) -> str:
    """The page's text as a reader sees it: tags removed, whitespace runs as one space."""
    return " ".join("".join(parse(document).text).split())


def sample_line(text: str, **changes: object) -> bytes:
    """One ``samples.jsonl`` line (format 1) of a successful chat request answered ``text``; ``changes`` replace
    fields."""
    sample = {
        "format": 1,
        "stage": "s1",
        "request_class": "chat",
        "worker": "w0",
        "seq": 0,
        "attempt": 0,
        "started_at": 100.0,
        "status": 200,
        "error_class": None,
        "error_detail": None,
        "prompt_tokens": 20,
        "output_tokens": 11,
        "finish_reason": "length",
        "server_request_id": None,
        "ttft_s": 0.2,
        "e2e_s": 1.0,
        "captured": True,
        "request": {
            "kind": "chat",
            "model": "m",
            "max_tokens": 11,
            "stream": True,
            "messages": [{"role": "user", "content": {"text": "say </pre> <b>hi</b>", "chars": 20}}],
            "messages_total": 1,
            "prompt": None,
            "params": {"temperature": 0.0},
        },
        "response": {"text": text, "chars": len(text)},
        "error_body": None,
        **changes,
    }
    return orjson.dumps(sample) + b"\n"


SECTIONS = (
    "verdict",
    "validity",
    "run",
    "capacity-section",
    "plan",
    "latency",
    "time",
    "token-lengths",
    "tables",
    "errors",
    "samples",
)
CHARTS = ("capacity", "cdf", "tpot-fit", "timeline", "tokens", "plan-chart", "cost-volume")


@pytest.fixture
def planned_run(tmp_path: Path) -> Path:
    """Two stages on a simulated 1-chunk band with an SLO that breaks between them, and a forecast."""
    run = two_stage_run(tmp_path, SIM)
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["spec"]["plan"] = {
        "peak_tokens_per_min": 600000.0,
        "headroom": 0.2,
        "architectures": ["llama-3.3-70b"],
    }
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    return run


def test_a_report_holds_every_section_and_chart_and_parses(planned_run: Path) -> None:
    page = parse(render_html([planned_run]))
    for section in SECTIONS:
        assert f"r0-{section}" in page.ids, section
    for chart in CHARTS:
        assert f"r0-{chart}" in page.ids, chart
    figures = [attrs for tag, attrs in page.tags if tag == "figure"]
    assert len(figures) == len(CHARTS)
    assert sum(1 for tag, _ in page.tags if tag == "svg") == len(CHARTS)
    assert len(page.ids) == len(set(page.ids)), "ids are unique on the page"
    assert "mathdefault" not in "".join(
        page.text
    )  # every tick label is plain text (no mathtext source shown)


def test_the_verdict_states_x_star_with_its_interval_and_the_plan(planned_run: Path) -> None:
    view = collect_run(planned_run)
    cap = view.capacity
    assert cap.max_rps == pytest.approx(15.0)  # halfway between 10 and 20 req/s (see two_stage_run)
    text = text_of(render_html([planned_run]))
    assert f"max SLO-compliant throughput: {cap.max_rps:,.2f} req/s" in text
    lo, hi = cap.max_rps_ci
    assert lo is not None and hi is not None
    assert f"95 % CI {lo:,.2f} – {hi:,.2f}" in text
    assert "binding limit: server" in text
    plan = view.plan
    assert not isinstance(plan, str)
    assert [r.architecture for r in plan.rows] == ["llama-3.1-8b", "llama-3.3-70b"]
    assert plan.rows[0].source.startswith("measured")
    assert f"Provision llama-3.1-8b — {plan.rows[0].source}" in text
    assert "example forecast" not in text


def test_no_slos_says_so_and_no_forecast_says_how_to_give_one(tmp_path: Path) -> None:
    rows = stage_rows("s0", 50, 5.0, 0.1) + stage_rows("s1", 50, 2.5, 0.2, t0=100.0)
    manifest = manifest_dict(stage_labels=("s0", "s1"), stages=[{"label": "s0"}, {"label": "s1"}])
    run = write_rows_run(tmp_path / "run", rows, manifest, prompt_tokens=100)
    text = text_of(render_html([run]))
    assert "SLOs: no SLOs given" in text
    assert "max throughput: 20.00 req/s" in text  # s1: 50 requests over 2.5 s
    assert "no forecast given: set [plan] peak_tpm in the scenario, or --peak-tpm / --peak-rps" in text


def test_hostile_text_is_escaped_everywhere(tmp_path: Path) -> None:
    rows = stage_rows(HOSTILE, 20, 2.0, 0.1, errors=3, error_class="server_error", detail=HOSTILE)
    for row in rows:
        row["request_class"] = HOSTILE
    manifest = manifest_dict(
        classes={HOSTILE: {"ttft_p95": 1.0}}, stage_labels=(HOSTILE,), stages=[{"label": HOSTILE}]
    )
    run = write_rows_run(tmp_path / "run", rows, manifest, prompt_tokens=10)
    document = render_html([run])
    page = parse(document)
    assert [tag for tag, _ in page.tags if tag in ("script", "img", "iframe", "object", "embed")] == []
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document  # shown as text, in the tables
    joined = "".join(page.text)
    assert HOSTILE in joined  # the reader sees exactly what the server said
    # ... in the charts' legends too, where matplotlib would read $…$ as math (and fail on \foo)
    charts = "".join(re.findall(r"<svg.*?</svg>", document, flags=re.DOTALL))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in charts and "$\\foo{$ price $5 and $6" in charts


def test_two_renders_are_byte_identical(planned_run: Path) -> None:
    assert render_html([planned_run]) == render_html([planned_run])


def test_the_page_refers_to_nothing_outside_itself(planned_run: Path) -> None:
    document = render_html([planned_run])
    page = parse(document)
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith("#"), (tag, name, value)  # only links inside the page
        assert tag not in ("link", "script", "img", "iframe")
    assert "@import" not in document
    assert re.findall(r"url\((.)", document) == ["#"] * document.count("url(")  # clip paths inside the page
    assert not re.search(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]+"', "", document.split("<footer>")[0]))


def test_an_interrupted_run_says_so_first(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["status"] = "interrupted"
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    text = text_of(render_html([run]))
    assert "This run was interrupted: the figures cover what was recorded before it stopped" in text
    assert "the run is interrupted: its last stage may be cut short" in text


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("failed", "This run failed: the load engine stopped with an error (see engine.log)"),
        ("running", "This run was still running (or its runner died) when the report was made"),
    ],
)
def test_a_failed_or_unfinished_run_says_so_first(tmp_path: Path, status: str, said: str) -> None:
    run = write_run(tmp_path, jsonl(records()))
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["status"] = status
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    assert said in text_of(render_html([run]))


def test_a_run_without_records_still_renders_and_says_there_is_nothing(tmp_path: Path) -> None:
    run = write_run(tmp_path, b"")
    page = parse(render_html([run]))
    assert "The run recorded no requests: there is nothing to chart." in "".join(page.text)
    assert "r0-verdict" in page.ids and "r0-timeline" not in page.ids


def test_a_run_where_nothing_succeeded_renders_without_a_warning(tmp_path: Path) -> None:
    import warnings

    failed = [
        replace(BASE, seq=n, error_class="server_error", status=503, error_detail="503", first_token_at=None)
        for n in range(6)
    ]
    run = write_run(tmp_path, jsonl(failed))
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error"
        )  # matplotlib's "No artists with labels found to put in legend" among them
        page = parse(render_html([run]))
    assert "r0-capacity" in page.ids


def test_errors_show_their_most_common_messages(tmp_path: Path) -> None:
    recs = [
        *records(),
        replace(BASE, seq=9, error_class="stream_cut", error_detail="cut", first_token_at=None),
    ]
    view = collect_run(write_run(tmp_path, jsonl(recs)))
    by_class = {row.error_class: row for row in view.errors}
    assert by_class["stream_cut"].count == 2 and by_class["stream_cut"].examples == (("cut", 2),)
    assert by_class["rate_limited"].count == 1
    assert by_class["stream_cut"].share == pytest.approx(2 / 9)


def test_the_validity_flags_a_generator_that_fell_behind(tmp_path: Path) -> None:
    rows = stage_rows("s0", 30, 3.0, 0.1)
    for row in rows:
        row["scheduled_at"] = row["started_at"] - 0.5  # every request started half a second late
    manifest = manifest_dict(
        stage_labels=("s0",), stages=[{"label": "s0", "target": {"kind": "rate", "rate": 10.0}}]
    )
    view = collect_run(write_rows_run(tmp_path / "run", rows, manifest, prompt_tokens=10))
    assert view.validity.doubtful
    generator = dict((label, (text, flag)) for label, text, flag in view.validity.items)["generator"]
    assert generator[1] and generator[0].startswith("did not keep up")


@pytest.mark.parametrize("share", [0.5, 0.62])
def test_an_engine_past_half_a_core_is_advised_more_processes_in_the_report_and_the_answer(
    tmp_path: Path, share: float
) -> None:
    manifest = manifest_dict(
        stage_labels=("s0",),
        stages=[
            {"label": "s0", "target": {"kind": "concurrency", "users": 30}, "generator_cpu_share": share}
        ],
        host={"platform": "linux", "cpus": 8, "usable_cpus": 4},
    )
    run = write_rows_run(tmp_path / "run", stage_rows("s0", 30, 3.0, 0.1), manifest, 10)
    view, document = collect_run(run), render_html([run])
    advice = (
        "the engine passed 50% of a core (s0 62%), where its p99 timings drift by several ms: --processes 2 (the "
        "run's machine had 4 usable CPUs, 3 to spare) or --expect-workers 2 (workers on other machines) would "
        "have measured more truly"
    )
    validity = _section(document, "r0-validity")
    lines = answer_lines(view)
    if share <= 0.5:
        assert "scale-out" not in validity and not any(line.startswith("scale-out") for line in lines)
        return
    assert f"<strong>scale-out</strong>: {advice}".replace("'", "&#x27;") in validity
    assert f"scale-out: {advice}" in lines
    assert lines[-1] == "validity: doubtful (scale-out, sample sizes): see the report"
    assert "linux, 8 CPUs (4 usable); 1 load process(es)" in _section(document, "r0-run")


def _section(document: str, sid: str) -> str:
    """The HTML of the ``<section>`` whose id is ``sid``."""
    start = document.index(f'id="{sid}"')
    return document[start : document.index("</section>", start)]


def test_a_comparison_overlays_runs_and_names_the_better_one(tmp_path: Path, planned_run: Path) -> None:
    faster = two_stage_run(tmp_path / "b", SIM, rps=(20, 40))
    document = render_html([planned_run, faster])
    page = parse(document)
    assert page.ids[:2] == ["comparison", "compare-capacity"]
    assert "r0-verdict" in page.ids and "r1-verdict" in page.ids
    figures = {f.name: f for f in key_figures([collect_run(planned_run), collect_run(faster)])}
    x_star = figures["max SLO-compliant req/s (X*)"]
    assert x_star.values == pytest.approx((15.0, 30.0))
    assert x_star.verdict(1) == "better" and x_star.best(["a", "b"]) == "b"
    ttft = figures["TTFT p95 at the highest shared stage (ms)"]
    assert ttft.verdict(1) == "same" and ttft.best(["a", "b"]) == "–"  # both runs' s1 have TTFT 0.6 s: a tie
    # the baseline plans for a forecast, the other run for none: the page says they answer different questions
    assert "The runs were judged against different forecasts" in text_of(document)
    assert "+100.0%" in "".join(page.text)


def test_replanning_replaces_the_forecast_and_the_architectures(planned_run: Path) -> None:
    view = collect_run(
        planned_run, PlanRequest(peak_tokens_per_min=1_200_000.0, architectures=("llama-3.1-70b",))
    )
    plan = view.plan
    assert not isinstance(plan, str)
    assert plan.forecast.peak_tokens_per_min == 1_200_000.0
    assert [r.architecture for r in plan.rows] == ["llama-3.1-8b", "llama-3.1-70b"]


def test_sample_requests_and_responses_are_shown_as_text(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    hostile = "</pre></table><script>alert('model')</script>"
    long_text = "x" * 2000
    (run / "samples.jsonl").write_bytes(
        sample_line(hostile) + sample_line(long_text, seq=1, response={"text": long_text, "chars": 5000})
    )
    document = render_html([run])
    page = parse(document)
    assert [tag for tag, _ in page.tags if tag in ("script", "b")] == []
    text = "".join(page.text)
    assert hostile in text and "say </pre> <b>hi</b>" in text  # exactly what was sent and answered, as text
    assert "… (cut at 2,000 of 5,000 characters)" in text
    assert sum(1 for tag, attrs in page.tags if attrs.get("class") == "sample-card") == 2


def test_unreadable_samples_are_said_not_fatal(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    (run / "samples.jsonl").write_bytes(b'{"format": 99}\n')
    text = text_of(render_html([run]))
    assert "the samples could not be read:" in text and "samples.jsonl:1" in text
    (run / "samples.jsonl").unlink()
    assert "the run stored no samples" in text_of(render_html([run]))


def test_a_plan_from_a_run_that_never_reached_its_limit_says_the_count_is_an_upper_bound(
    tmp_path: Path,
) -> None:
    run = two_stage_run(tmp_path, SIM)
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["spec"]["request_classes"][0]["slo"] = {"ttft_p95": 5.0}  # both stages meet it
    manifest["spec"]["plan"] = {"peak_tokens_per_min": 600000.0}
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    line = plan_line(collect_run(run))
    assert line.endswith(
        "An upper bound on the count: every stage met the SLOs, so the endpoint was never pushed "
        "to its limit — sweep higher to size it."
    )


def test_the_command_shown_has_no_credentials_even_from_an_older_manifest(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["command"] = [
        "loadtest",
        "run",
        "--endpoint",
        "http://alice:s3cretPASS@127.0.0.1:9/v1?token=t0k",
    ]
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    document = render_html([run])
    assert "s3cretPASS" not in document and "t0k" not in document
    assert "loadtest run --endpoint http://127.0.0.1:9/v1" in text_of(document)


def test_the_measured_plan_row_is_the_hand_computed_count(tmp_path: Path) -> None:
    # X* = 15 req/s at 1000 in + 100 out: 16,500 tokens/s within the SLO
    run = two_stage_run(tmp_path, SIM)
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["spec"]["plan"] = {"peak_tokens_per_min": 6_000_000.0, "headroom": 0.2}
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    plan = collect_run(run).plan
    assert not isinstance(plan, str) and plan.measured is not None
    row = plan.rows[0]
    # r = measured / nominal tokens/s of the band it ran on; chunks = ⌈D·(1 + h) / (r·c)⌉, c the price table's chunk
    assert plan.measured.slo_tokens_per_s == pytest.approx(16_500.0)
    ratio = 16_500.0 / plan.measured.band_tokens_per_s
    assert row.mix_ratio == pytest.approx(ratio)
    assert row.chunk_size is not None and row.chunks is not None
    assert row.chunks == math.ceil(6_000_000 / 60 * 1.2 / (ratio * row.chunk_size))
    assert row.band_tokens_per_s == pytest.approx(row.chunks * row.chunk_size)


def test_a_capacity_panel_shows_the_percentile_an_slo_names() -> None:
    assert _views({"a": {"ttft_p99": 1.0}, "b": {"e2e_p90": 2.0, "tpot_p50": 0.1}}) == [
        ("ttft", "p99"),
        ("tpot", "p50"),
        ("e2e", "p90"),
    ]
    assert _views({}) == [("ttft", "p95"), ("tpot", "p50"), ("e2e", "p95")]


def test_renders_in_two_processes_are_byte_identical(planned_run: Path, tmp_path: Path) -> None:
    outs = []
    for n, seed in enumerate(("1", "2")):
        out = tmp_path / f"r{n}.html"
        proc = run_cli(
            "report", str(planned_run), "-o", str(out), env={"PYTHONHASHSEED": seed, "TZ": f"UTC+{n}"}
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
