"""What ``loadtest gate`` writes: a console table, JUnit XML, a Markdown summary and JSON, all from one
:class:`analysis.gate.GateResult`.

JUnit XML: one ``<testsuite>`` per gate, one ``<testcase>`` per threshold and per compared metric in each stage
(``classname`` ``loadtest.gate.threshold`` / ``loadtest.gate.regression``, ``name`` the flag and the stage); a
failed check carries a ``<failure>`` whose message has the measured value, the threshold and the interval; a check that
could not be measured, and the run's own validity problems (one ``loadtest.gate.validity`` test case), carry an
``<error>`` — CI systems show those apart from failures, which is what an invalid run is. It validates against
Jenkins' ``junit-10.xsd`` (``tests/unit/data``), which GitHub, GitLab and Jenkins read.
"""

from __future__ import annotations

import math
import re
from xml.etree import ElementTree as ET

import orjson

from analysis.gate import JOINT_CONFIDENCE, GateCheck, GateResult, Measure
from reports.console import text_table

__all__ = [
    "GATE_JSON_FORMAT",
    "check_detail",
    "format_threshold",
    "format_value",
    "gate_json",
    "gate_junit",
    "gate_markdown",
    "gate_table",
    "printable",
    "verdict_line",
]

GATE_JSON_FORMAT = 1
SHOWN = 3  # failed checks the verdict line spells out; the tables have them all
INTERVALS = (
    "a change's interval: from each run's interval at 97.5 % (both hold together with 95 %), widened by the noise "
    "floor; a regression fails only when it lies wholly beyond its threshold"
)
_DASH = "–"
_WORD = {"pass": "PASS", "fail": "FAIL", "invalid": "INVALID"}


def format_value(metric: str, value: float | None) -> str:
    """A metric's value in its unit: latencies in ms, shares in %, throughputs per second."""
    if value is None:
        return _DASH
    if metric in ("attainment", "error_rate", "flow_attainment", "flow_error_rate"):
        return f"{value * 100:.2f} %"
    if metric.endswith("_per_s"):
        return f"{value:,.1f} {'req/s' if metric == 'req_per_s' else 'tok/s'}"
    ms = value * 1000
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.3f} ms"


def _interval(metric: str, m: Measure) -> str:
    if m.low is None or m.high is None:
        return ""
    return f"[{format_value(metric, m.low)}, {format_value(metric, m.high)}]"


def _percent(x: float) -> str:
    if math.isinf(x):
        return "∞"
    text = f"{x * 100:+.1f} %"
    return "0.0 %" if text in ("+0.0 %", "-0.0 %") else text


def printable(text: str) -> str:
    """A name from a run (a stage, a class, a run directory) with control characters spelled out, so it stays on
    its line and in valid XML: ``two\\nlines``."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def format_threshold(check: GateCheck) -> str:
    """``≤ 800 ms``, ``≥ 95.00 %``, or a regression's ``≤ +10 %`` / ``≥ −10 %`` change."""
    if check.kind == "regression":
        return f"{'≤' if check.threshold > 0 else '≥'} {_percent(check.threshold)}"
    return f"{'≤' if check.ceiling else '≥'} {format_value(check.metric, check.threshold)}"


def _effect(check: GateCheck) -> str:
    if check.ratio is None:
        return _DASH
    text = _percent(check.ratio - 1)
    if check.ratio_low is not None and check.ratio_high is not None:
        text += f" [{_percent(check.ratio_low - 1)}, {_percent(check.ratio_high - 1)}]"
    return text


def check_detail(check: GateCheck) -> str:
    """One line: the measured value (and interval), the threshold, and for a comparison the effect and noise floor."""
    value = (
        f"{format_value(check.metric, check.current.value)} {_interval(check.metric, check.current)}".strip()
    )
    if check.kind == "regression":
        base = check.baseline
        text = f"{value} vs baseline {format_value(check.metric, base.value if base else None)}"
        level = f" (each at {JOINT_CONFIDENCE:.1%})" if check.ratio_low is not None else ""
        text += f"{level}: change {_effect(check)}, threshold {format_threshold(check)}"
        if check.noise_floor:
            text += f" (interval widened by a noise floor of {check.noise_floor:.1%})"
    else:
        level = " (95 %)" if check.current.low is not None and check.current.high is not None else ""
        text = f"{value}{level}, threshold {format_threshold(check)}"
    if check.note:
        text += f"; {check.note}"
    return text


def verdict_line(result: GateResult) -> str:
    """The gate's answer in one line, with what failed or why it is invalid."""
    n = len(result.checks)
    if result.verdict == "invalid":
        reasons = result.reasons()
        return f"gate: INVALID — the run cannot be judged ({len(reasons)} problem(s)): " + printable(
            "; ".join(reasons)
        )
    if result.verdict == "fail":
        failed = result.failed
        shown = "; ".join(f"{printable(c.name)} {check_detail(c)}" for c in failed[:SHOWN])
        more = f"; and {len(failed) - SHOWN} more (see the tables)" if len(failed) > SHOWN else ""
        return f"gate: FAIL — {len(failed)} of {n} checks failed: {shown}{more}"
    return f"gate: PASS — {n} check(s) passed"


def gate_table(result: GateResult) -> str:
    """The console output: thresholds, then comparisons, then notes and the verdict line."""
    parts = [
        printable(f"gate {result.run}" + (f" against baseline {result.baseline}" if result.baseline else ""))
    ]
    thresholds = [c for c in result.checks if c.kind == "threshold"]
    if thresholds:
        rows: list[tuple[str, ...]] = [
            ("threshold", "stage", "value", "95 % interval", "threshold", "verdict")
        ]
        for c in thresholds:
            rows.append(
                (
                    printable(c.text),
                    printable(c.stage),
                    format_value(c.metric, c.current.value),
                    _interval(c.metric, c.current) or _DASH,
                    format_threshold(c),
                    _WORD[c.verdict] + (f": {c.note}" if c.note else ""),
                )
            )
        parts.append("\n".join(text_table(rows)))
    compared = [c for c in result.checks if c.kind == "regression"]
    if compared:
        rows = [("regression", "stage", "baseline", "this run", "change [interval]", "threshold", "verdict")]
        for c in compared:
            rows.append(
                (
                    printable(c.text),
                    printable(c.stage),
                    format_value(c.metric, c.baseline.value if c.baseline else None),
                    format_value(c.metric, c.current.value),
                    _effect(c),
                    format_threshold(c),
                    _WORD[c.verdict] + (f": {c.note}" if c.note else ""),
                )
            )
        parts.append("\n".join(text_table(rows)))
        parts.append(INTERVALS)
        floor = result.noise_source or "none (configure --noise-floor, or measure one with loadtest noise)"
        parts.append(f"noise floor: {floor}")
    parts += [printable(f"note: {note}") for note in result.notes]
    parts += [printable(f"invalid: {p}") for p in result.problems]
    parts.append(verdict_line(result))
    return "\n\n".join(parts) + "\n"


def gate_json(result: GateResult) -> bytes:
    """The whole result as JSON (``format`` versions it)."""
    body = {
        "format": GATE_JSON_FORMAT,
        "run": result.run,
        "baseline": result.baseline,
        "verdict": result.verdict,
        "checks": [c.to_dict() for c in result.checks],
        "problems": [{"stage": p.stage, "text": p.text} for p in result.problems],
        "noise_source": result.noise_source,
        "notes": list(result.notes),
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def gate_junit(result: GateResult) -> bytes:
    """JUnit XML (see the module docstring)."""
    cases = []
    failures = errors = 0
    for c in result.checks:
        case = ET.Element("testcase", name=printable(c.name), classname=f"loadtest.gate.{c.kind}", time="0")
        detail = printable(check_detail(c))
        if c.verdict == "fail":
            failures += 1
            ET.SubElement(case, "failure", message=detail, type=c.kind).text = detail
        elif c.verdict == "invalid":
            errors += 1
            ET.SubElement(case, "error", message=detail, type="invalid").text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
        cases.append(case)
    if result.problems:
        errors += 1
        case = ET.Element("testcase", name="run validity", classname="loadtest.gate.validity", time="0")
        text = printable("; ".join(str(p) for p in result.problems))
        ET.SubElement(case, "error", message=text, type="invalid").text = text
        cases.append(case)
    name = printable(
        f"loadtest gate {result.run}" + (f" vs baseline {result.baseline}" if result.baseline else "")
    )
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", attrib={"name": "loadtest gate", "time": "0", **counts})
    suite = ET.SubElement(root, "testsuite", attrib={"name": name, "skipped": "0", "time": "0", **counts})
    suite.extend(cases)
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"


def _md(text: str) -> str:
    """Text safe in a Markdown table cell: nothing in it is markup."""
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|":
        text = text.replace(ch, "\\" + ch)
    return text


def _code(text: str) -> str:
    """A flag or name as code in a table cell, exactly as it is: entities are not decoded in code, so only the
    cell's ``|`` is escaped, and the fence is longer than any run of backticks inside."""
    text = printable(text).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def gate_markdown(result: GateResult) -> str:
    """A Markdown summary (for ``$GITHUB_STEP_SUMMARY`` or a merge request comment)."""
    icon = {"pass": "✅", "fail": "❌", "invalid": "⚠️"}
    head = f"### {icon[result.verdict]} loadtest gate: {_WORD[result.verdict]} — {_code(result.run)}"
    if result.baseline:
        head += f" vs baseline {_code(result.baseline)}"
    lines = [head, ""]
    if result.verdict == "invalid":
        lines += ["The run cannot be judged:", ""] + [f"- {_md(r)}" for r in result.reasons()] + [""]
    thresholds = [c for c in result.checks if c.kind == "threshold"]
    if thresholds:
        lines += [
            "| | threshold | stage | value | 95 % interval | threshold |",
            "|---|---|---|---:|---|---:|",
        ]
        for c in thresholds:
            lines.append(
                f"| {icon[c.verdict]} | {_code(c.text)} | {_code(c.stage)} | {format_value(c.metric, c.current.value)} "
                f"| {_interval(c.metric, c.current) or _DASH} | {_md(format_threshold(c))} |"
            )
        lines.append("")
    compared = [c for c in result.checks if c.kind == "regression"]
    if compared:
        lines += [
            "| | regression | stage | baseline | this run | change [interval] | threshold |",
            "|---|---|---|---:|---:|---|---:|",
        ]
        for c in compared:
            base = format_value(c.metric, c.baseline.value if c.baseline else None)
            lines.append(
                f"| {icon[c.verdict]} | {_code(c.text)} | {_code(c.stage)} | {base} "
                f"| {format_value(c.metric, c.current.value)} | {_md(_effect(c))} | {_md(format_threshold(c))} |"
            )
        lines += [
            "",
            _md(INTERVALS) + ".",
            "",
            f"Noise floor: {_md(result.noise_source or 'none configured or measured')}.",
            "",
        ]
    noted = [c for c in result.checks if c.note and c.verdict != "pass"]
    lines += [f"- {_code(c.name)}: {_md(c.note or '')}" for c in noted] + ([""] if noted else [])
    lines += [f"_{_md(note)}_  " for note in result.notes]
    return "\n".join(lines).rstrip() + "\n"
