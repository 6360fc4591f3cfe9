"""The run directory: its file names, the typed manifest and stage windows, the engine's events, the samples of
requests and responses and the endpoint's own metrics — the one contract between the writers (:mod:`loadtest.runner`,
the engine's recorder) and the readers (``analysis``, ``reports``, the CLI).

Sits above :mod:`loadtest.spec` and :mod:`loadtest.client`, below :mod:`loadtest.engine`, :mod:`loadtest.runner` and
``analysis``; imports no pandas, pyarrow or gevent.
"""

from __future__ import annotations

from loadtest.rundir.events import read_events, run_failure, stage_windows
from loadtest.rundir.files import (
    ENGINE_LOG,
    EVENTS_FILE,
    GAPS_FILE,
    MANIFEST_FILE,
    RECORDS_CACHE,
    RECORDS_FILE,
    REPORT_FILE,
    SAMPLES_FILE,
    SPEC_FILE,
    SUMMARY_FILE,
)
from loadtest.rundir.flows import FLOWS_FILE, FlowRecord, read_flows
from loadtest.rundir.manifest import (
    FORMAT,
    READ_FORMATS,
    GeneratorVerdict,
    Host,
    Manifest,
    RunDistribution,
    RunFailure,
    SimulatedEndpoint,
    StageTarget,
    StageWindow,
    read_manifest,
    write_manifest,
)
from loadtest.rundir.samples import Sample, SampleMessage, SampleRequest, SampleText, read_samples
from loadtest.rundir.server_metrics import (
    SERVER_METRICS_FILE,
    SERVER_METRICS_FORMAT,
    ServerMetricsHeader,
    ServerMetricsLog,
    ServerMetricsWriter,
    read_server_metrics,
)

__all__ = [
    "ENGINE_LOG",
    "EVENTS_FILE",
    "FLOWS_FILE",
    "FORMAT",
    "GAPS_FILE",
    "MANIFEST_FILE",
    "READ_FORMATS",
    "RECORDS_CACHE",
    "RECORDS_FILE",
    "REPORT_FILE",
    "SAMPLES_FILE",
    "SERVER_METRICS_FILE",
    "SERVER_METRICS_FORMAT",
    "SPEC_FILE",
    "SUMMARY_FILE",
    "FlowRecord",
    "GeneratorVerdict",
    "Host",
    "Manifest",
    "RunDistribution",
    "RunFailure",
    "Sample",
    "SampleMessage",
    "SampleRequest",
    "SampleText",
    "ServerMetricsHeader",
    "ServerMetricsLog",
    "ServerMetricsWriter",
    "SimulatedEndpoint",
    "StageTarget",
    "StageWindow",
    "read_events",
    "read_flows",
    "read_manifest",
    "read_samples",
    "read_server_metrics",
    "run_failure",
    "stage_windows",
    "write_manifest",
]
