"""Read a run directory into typed, raw-valued tables. Pure: no live runner, only files.

Derived per-request metrics (seconds; ``docs/metrics.md`` has the definitions):

==================== =====================================================================
``ttft``              ``first_token_at − started_at``
``ttft_from_intended````first_token_at − scheduled_at`` (includes the generator's own delay)
``e2e``               ``ended_at − started_at``
``tpot``              ``(e2e − ttft) / (output_tokens − 1)``; NaN when output_tokens ≤ 1 or no TTFT
``lag``               ``started_at − scheduled_at``
``ok``                ``error_class`` is null
==================== =====================================================================

NaN marks "undefined" inside a frame; summaries turn it into ``None`` before anything is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loadtest.errors import ConfigError

__all__ = ["RunData", "load_records", "load_run", "with_metrics"]

_FLOAT_COLS = ("scheduled_at", "started_at", "first_token_at", "last_token_at", "ended_at", "retry_after_s")
_INT_COLS = ("seq", "status", "prompt_tokens", "output_tokens", "client_output_tokens", "max_tokens")
_STR_COLS = (
    "run_id",
    "stage",
    "request_class",
    "endpoint",
    "worker",
    "error_class",
    "error_detail",
    "token_source",
    "finish_reason",
    "server_request_id",
)


@dataclass(frozen=True, slots=True)
class RunData:
    """A finished (or interrupted) run as read from disk."""

    run_dir: Path
    manifest: dict[str, Any]
    records: pd.DataFrame
    skipped_lines: int


def load_records(path: Path) -> tuple[pd.DataFrame, int]:
    """Parse ``records.jsonl``; a partial last line (crash mid-write) is skipped and counted, never fatal."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    if path.exists():
        with path.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    skipped += 1
    frame = pd.DataFrame(rows)
    for col in _FLOAT_COLS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64") if col in frame else np.nan
    for col in _INT_COLS:
        frame[col] = (
            pd.to_numeric(frame[col], errors="coerce")
            if col in frame
            else pd.Series(np.nan, index=frame.index)
        ).astype("Int64")
    for col in _STR_COLS:
        if col not in frame:
            frame[col] = None
        frame[col] = frame[col].astype("object")
    if "chunk_gaps" not in frame:
        frame["chunk_gaps"] = None
    return with_metrics(frame), skipped


def with_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived per-request columns (see module docstring)."""
    out = frame
    out["ok"] = out["error_class"].isna()
    out["ttft"] = out["first_token_at"] - out["started_at"]
    out["ttft_from_intended"] = out["first_token_at"] - out["scheduled_at"]
    out["e2e"] = out["ended_at"] - out["started_at"]
    out["lag"] = out["started_at"] - out["scheduled_at"]
    tokens = out["output_tokens"].astype("float64")
    decode = out["e2e"] - out["ttft"]
    out["tpot"] = (decode / (tokens - 1.0)).where(tokens > 1.0)
    return out


def load_run(run_dir: Path) -> RunData:
    """Read ``manifest.json`` and ``records.jsonl`` from a run directory."""
    if not run_dir.is_dir():
        raise ConfigError(f"no run directory at {run_dir}")
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no manifest.json)")
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError:
        raise ConfigError(f"{manifest_path} is not valid JSON") from None
    records, skipped = load_records(run_dir / "records.jsonl")
    return RunData(run_dir=run_dir, manifest=manifest, records=records, skipped_lines=skipped)
