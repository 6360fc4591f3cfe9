"""The file names of a run directory, in one place.

========================== ====================================================================================
``manifest.json``          what ran, against what, how it went (:class:`loadtest.rundir.manifest.Manifest`)
``spec.json``              the run as the engine child reads it (:class:`loadtest.spec.runspec.RunSpec`)
``records.jsonl``          one request record a line (:mod:`loadtest.client.records`)
``chunk_gaps.f32``         the records' chunk gaps, float32 (format 2; :mod:`loadtest.client.records`)
``records.cache.parquet``  a columnar copy of ``records.jsonl`` written by the first analysis (``analysis.columnar``);
                           a cache: ``records.jsonl`` stays the source of truth
``events.jsonl``           the engine's events: stage starts and ends, sweep decisions (:mod:`loadtest.rundir.events`)
``flows.jsonl``            a Python scenario's flows, one line each as it ends (:mod:`loadtest.rundir.flows`)
``samples.jsonl``          a few requests and responses per request class (:mod:`loadtest.rundir.samples`)
``server_metrics.jsonl``   the endpoint's own metrics, scraped by the CLI (:mod:`loadtest.rundir.server_metrics`)
``engine.log``             the engine child's output
``summary.json``           the per-stage summary ``loadtest run`` prints
``report.html``            the self-contained HTML report ``loadtest run`` writes at its end (:mod:`reports.html`)
========================== ====================================================================================

The two record files are named in :mod:`loadtest.client.records` (below this package: the recorder and the record
reader use them) and re-exported here.
"""

from __future__ import annotations

from typing import Final

from loadtest.client.records import GAPS_FILE, RECORDS_FILE

__all__ = [
    "ENGINE_LOG",
    "EVENTS_FILE",
    "GAPS_FILE",
    "MANIFEST_FILE",
    "RECORDS_CACHE",
    "RECORDS_FILE",
    "REPORT_FILE",
    "SAMPLES_FILE",
    "SPEC_FILE",
    "SUMMARY_FILE",
]

MANIFEST_FILE: Final = "manifest.json"
RECORDS_CACHE: Final = "records.cache.parquet"
SPEC_FILE: Final = "spec.json"
EVENTS_FILE: Final = "events.jsonl"
SAMPLES_FILE: Final = "samples.jsonl"
ENGINE_LOG: Final = "engine.log"
SUMMARY_FILE: Final = "summary.json"
REPORT_FILE: Final = "report.html"
