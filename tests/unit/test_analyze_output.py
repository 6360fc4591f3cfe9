"""What ``loadtest analyze`` prints and what ``loadtest run`` writes as summary.json, built by reports alone."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import orjson

from analysis import capacity_from_run, class_slos, load_run, predict, summarize_classes, summarize_stages
from reports import (
    AnalyzeReport,
    render_analysis,
    render_capacity,
    render_summary_table,
    summary_csv_rows,
    summary_json,
)
from tests.helpers import SLO, jsonl, records, write_run


def report_of(run: Path, by: str = "stage", **extra: object) -> AnalyzeReport:
    data = load_run(run)
    order = ["s1", "s2"]
    slos = class_slos(data.manifest.spec.request_classes)
    if by == "stage":
        summaries = summarize_stages(data.records, order, slos=slos)
    else:
        summaries = summarize_classes(data.records, slos=slos, by_stage=by == "stage,class", order=order)
    fields: dict[str, object] = {
        "run_id": data.manifest.run_id,
        "status": data.manifest.status,
        "by": by,
        "slos": slos,
        "skipped_lines": data.skipped_lines,
        "summaries": summaries,
        "capacity": capacity_from_run(data),
    }
    fields.update(extra)
    return AnalyzeReport(**fields)  # type: ignore[arg-type]


def test_json_has_every_part_in_order(tmp_path: Path) -> None:
    report = report_of(write_run(tmp_path, jsonl(records())), by="stage,class")
    payload = json.loads(render_analysis(report, "json"))
    assert list(payload) == [
        "run_id", "status", "by", "slos", "skipped_lines", "summaries", "capacity", "predictions", "server_metrics",
        "input_length", "cold_starts",
    ]  # fmt: skip
    assert (payload["server_metrics"], payload["input_length"], payload["cold_starts"]) == (None, None, [])
    assert (payload["run_id"], payload["status"], payload["by"]) == ("r1", "complete", "stage,class")
    assert payload["slos"] == SLO
    assert [(s["stage"], s["request_class"]) for s in payload["summaries"]] == [
        ("s1", "chat"),
        ("s2", "batch"),
        ("s2", "chat"),
    ]
    assert payload["predictions"] == []
    assert payload["server_metrics"] is None  # the run scraped none
    assert payload["capacity"]["server_evidence"] == []


def test_json_leaves_out_predictions_that_could_not_be_made(tmp_path: Path) -> None:
    base = report_of(write_run(tmp_path, jsonl(records())))
    made = predict(base.capacity, 1.0)
    assert made is not None
    report = replace(base, predictions=[None, made], predicted=True)
    payload = json.loads(render_analysis(report, "json"))
    assert payload["predictions"] == [orjson.loads(orjson.dumps(made.to_dict()))]
    assert payload["predictions"][0]["rate_rps"] == 1.0


def test_table_is_summary_capacity_and_predictions_only_when_asked(tmp_path: Path) -> None:
    report = report_of(write_run(tmp_path, jsonl(records())))
    table = render_analysis(report, "table")
    assert table == render_summary_table(report.summaries) + "\n\n" + render_capacity(report.capacity) + "\n"
    asked = render_analysis(replace(report, predicted=True), "table")
    assert asked.startswith(table[:-1] + "\n\n") and len(asked) > len(table)


def test_no_summary_still_gives_a_table_note_and_a_csv_header(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    report = replace(report_of(run, by="class"), summaries=[])
    assert render_analysis(report, "table").startswith("no record names a request class\n\n")
    assert render_analysis(report, "csv") == "\n"  # nothing to take a header from
    per_stage = summarize_stages(load_run(run).records, ["s1", "s2"])
    text = render_analysis(replace(report, csv_header_from=per_stage), "csv")
    assert text == ",".join(summary_csv_rows(per_stage)[0]) + "\n"
    assert text.startswith("stage,request_class,requests,ok,")


def test_csv_columns_in_order_of_first_appearance(tmp_path: Path) -> None:
    report = report_of(write_run(tmp_path, jsonl(records())), by="class")
    rows = list(csv.DictReader(io.StringIO(render_analysis(report, "csv"))))
    assert [r["request_class"] for r in rows] == ["batch", "chat"]
    assert rows[1]["errors_rate_limited"] == "1" and rows[0]["errors_rate_limited"] == ""
    header = render_analysis(report, "csv").split("\n", 1)[0].split(",")
    assert header[:4] == ["stage", "request_class", "requests", "ok"]
    assert len(header) == len(set(header))


def test_summary_json_is_the_stage_summaries_indented(tmp_path: Path) -> None:
    report = report_of(write_run(tmp_path, jsonl(records())))
    data = summary_json(report.summaries)
    assert orjson.loads(data) == {
        "stages": [orjson.loads(orjson.dumps(s.to_dict())) for s in report.summaries]
    }
    assert data.startswith(b'{\n  "stages": [\n    {\n')


def test_validity_shows_each_item_and_what_a_gate_would_call_invalid(tmp_path: Path) -> None:
    from analysis.validity import Problem, Validity

    validity = Validity(
        (("generator", "kept up in every stage", False), ("errors", "3 of 8 requests failed", True)),
        (Problem("s2", "the planned load was not offered: 40 of 100 arrivals waited"),),
    )
    report = report_of(write_run(tmp_path, jsonl(records())), validity=validity)
    text = render_analysis(report, "table")
    assert text.endswith(
        "validity:\n"
        "    generator: kept up in every stage\n"
        "  ! errors: 3 of 8 requests failed\n"
        "invalid for a gate over these stages (loadtest gate exits 98):\n"
        "  - s2: the planned load was not offered: 40 of 100 arrivals waited\n"
    )
    body = orjson.loads(render_analysis(report, "json"))
    assert body["validity"]["invalid"] is True
    assert body["validity"]["problems"] == [
        {"stage": "s2", "text": "the planned load was not offered: 40 of 100 arrivals waited"}
    ]
    valid = render_analysis(replace(report, validity=Validity(validity.items)), "table")
    assert valid.endswith("valid: a gate can judge every stage\n")
