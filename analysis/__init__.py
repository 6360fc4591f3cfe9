"""Pure analysis of finished runs: a run directory → a typed DataFrame → per-stage and per-class summaries with
goodput, the generator's self-check, the capacity curve with confidence intervals, calibration of the model, and
the provisioning plan (:mod:`analysis.plan`). Files in, DataFrames and dataclasses out; no live runner."""

from analysis.capacity import (
    DEFAULT_MAX_ERROR_SHARE,
    CapacityResult,
    capacity,
    capacity_from_run,
    predict,
)
from analysis.fit import LatencyPrediction, LinearFit, fit_linear, predict_latency
from analysis.frame import (
    SKIPPED_LINES,
    RunData,
    flat_gaps,
    load_records,
    load_run,
    require_records,
    with_metrics,
)
from analysis.goodput import (
    MISMATCH_TOLERANCE,
    class_slos,
    good_mask,
    request_itl_percentile,
    slo_metric,
    token_mismatch,
)
from analysis.load_check import (
    DEFAULT_MAX_LAG_S,
    DEFAULT_MAX_LOOP_DELAY_S,
    SATURATED_CPU_SHARE,
    StageLoad,
    check_load,
)
from analysis.stage_points import SloCheck, StagePoint
from analysis.summary import (
    PERCENTILES,
    StageSummary,
    limit_type,
    percentiles,
    summarize_classes,
    summarize_stages,
)

__all__ = [
    "DEFAULT_MAX_ERROR_SHARE",
    "DEFAULT_MAX_LAG_S",
    "DEFAULT_MAX_LOOP_DELAY_S",
    "MISMATCH_TOLERANCE",
    "PERCENTILES",
    "SATURATED_CPU_SHARE",
    "SKIPPED_LINES",
    "CapacityResult",
    "LatencyPrediction",
    "LinearFit",
    "RunData",
    "SloCheck",
    "StageLoad",
    "StagePoint",
    "StageSummary",
    "capacity",
    "capacity_from_run",
    "check_load",
    "class_slos",
    "fit_linear",
    "flat_gaps",
    "good_mask",
    "limit_type",
    "load_records",
    "load_run",
    "percentiles",
    "predict",
    "predict_latency",
    "request_itl_percentile",
    "require_records",
    "slo_metric",
    "summarize_classes",
    "summarize_stages",
    "token_mismatch",
    "with_metrics",
]
