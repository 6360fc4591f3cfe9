"""The report's samples section: a few requests per class as sent and what came back, stored at run time
(``samples.jsonl``), every text escaped."""

from __future__ import annotations

from loadtest.rundir import Sample, SampleText
from reports.console import format_ms
from reports.html.blocks import DASH as _DASH
from reports.html.blocks import escape as _e
from reports.html.collect import RunView

__all__ = ["samples_section"]


def _text(value: SampleText | None) -> str:
    """A stored text, escaped, in a ``<pre>``, saying when it was cut."""
    if value is None:
        return '<p class="note">not collected</p>'
    cut = f"\n… (cut at {len(value.text):,} of {value.chars:,} characters)" if value.truncated else ""
    return f'<pre class="sample">{_e(value.text + cut)}</pre>'


def _sample(sample: Sample) -> str:
    outcome = "ok" if sample.ok else f"{sample.error_class} ({sample.status or 'no status'})"
    facts = [
        f"stage {sample.stage}",
        f"seq {sample.seq}",
        outcome,
        f"TTFT {format_ms(sample.ttft_s)} ms",
        f"E2E {format_ms(sample.e2e_s)} ms",
        f"{sample.prompt_tokens if sample.prompt_tokens is not None else _DASH} in / "
        f"{sample.output_tokens if sample.output_tokens is not None else _DASH} out",
    ]
    if sample.finish_reason:
        facts.append(f"finish {sample.finish_reason}")
    req = sample.request
    params = ", ".join(f"{k}={v}" for k, v in req.params.items())
    head = f"{req.kind} · model {req.model or _DASH} · max_tokens {req.max_tokens or _DASH}"
    head += f" · {'streamed' if req.stream else 'not streamed'}" + (f" · {params}" if params else "")
    if req.messages:
        shown = "\n\n".join(
            f"[{m.role}] {m.content.text}" + ("…" if m.content.truncated else "") for m in req.messages
        )
        more = req.messages_total - len(req.messages)
        if more > 0:
            shown += f"\n\n… and {more} more messages"
        asked = f'<pre class="sample">{_e(shown)}</pre>'
    else:
        asked = _text(req.prompt)
    parts = [
        f'<div class="sample-card"><p class="sample-head"><strong>{_e(sample.request_class)}</strong> — '
        f"{_e(' · '.join(facts))}</p>",
        f'<p class="note">request: {_e(head)}</p>{asked}',
    ]
    if sample.error_detail:
        parts.append(f'<p class="note">error: {_e(sample.error_detail)}</p>')
    if sample.response is not None or sample.ok:
        parts.append(f'<p class="note">response:</p>{_text(sample.response)}')
    if sample.error_body is not None:
        parts.append(f'<p class="note">error body:</p>{_text(sample.error_body)}')
    parts.append("</div>")
    return "".join(parts)


def samples_section(view: RunView, vid: str) -> str:
    intro = (
        "A few requests per class as sent and what came back, stored while the run ran — the first successes of "
        "each class and the first failures of each error class; texts redacted and cut at 2,000 characters, "
        "shown as text."
    )
    body = "".join(_sample(s) for s in view.samples) or f"<p>{_e(view.samples_note or 'no samples')}</p>"
    head = f'<h3>Sample requests and responses</h3><p class="note">{_e(intro)}</p>'
    return f'<section id="{vid}-samples">{head}{body}</section>'
