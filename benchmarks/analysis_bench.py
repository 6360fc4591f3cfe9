"""How fast is the analysis of a big run? (run by hand; results go in docs/performance.md)

    python benchmarks/analysis_bench.py [--records 1000000] [--dir /tmp/loadtest-analysis-bench] [--repeat 1]
                                        [--export parquet|csv]

Writes a synthetic run directory once in the recorder's format 2 (manifest + ``records.jsonl`` + ``chunk_gaps.f32``:
6 closed-loop stages, 3 request classes, about 3 % errors growing with load, half of them 429s, 64 chunk gaps per
streamed record as float32 in the side file, ``gap_offset`` / ``gap_count`` on the line), then,
writes its columnar copy ``records.cache.parquet`` as the run's own ``loadtest run`` would at its end (the time it
took is printed), then, in a fresh child process per repeat, times the analysis out of core (:mod:`analysis.scan`:
open the run, then one pass over the stages for the per-stage and per-class summaries and the capacity) and reports
the child's peak RSS (``VmHWM``, :func:`loadtest.engine.procstat.peak_rss_mb`; interpreter and libraries included).
With ``--export FORMAT`` the child times ``loadtest export`` instead — what the command does, without click: load,
build the table (:func:`reports.export.export_table`), write it to ``DIR/export.FORMAT`` — with the same peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_driver import ensure_run, repeat_in_children  # noqa: E402

from loadtest.client.protocol import EndpointSpec, RequestClass  # noqa: E402
from loadtest.client.records import GAPS_FILE  # noqa: E402
from loadtest.engine.procstat import peak_rss_mb  # noqa: E402
from loadtest.rundir import (  # noqa: E402
    FORMAT,
    MANIFEST_FILE,
    RECORDS_CACHE,
    Host,
    Manifest,
    RunDistribution,
)
from loadtest.spec.runspec import RunSpec, Stage  # noqa: E402
from reports.export import ExportFormat  # noqa: E402

USERS = (1, 4, 8, 16, 32, 64)
ERROR_SHARE = (0.002, 0.005, 0.01, 0.03, 0.06, 0.073)  # about 3 % over the run, growing with load
CLASSES = (
    ("chat", 0.6, True, {"ttft_p95": 0.5, "tpot_p95": 0.05}),
    ("rag", 0.3, True, {"ttft_p95": 1.0, "tpot_p95": 0.05}),
    ("batch", 0.1, False, {"e2e_p95": 8.0}),
)
_RATE_LIMIT_DETAIL = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace output tokens per minute rate limit"


def generate(run_dir: Path, n: int, seed: int = 7) -> None:
    """Write ``run_dir/manifest.json``, ``run_dir/records.jsonl`` and ``run_dir/chunk_gaps.f32`` with ``n``
    records."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    per_stage = n // len(USERS)
    t = 1.7e9
    stages = []
    written = 0  # gaps in the side file so far
    with (run_dir / "records.jsonl").open("wb") as fh, (run_dir / GAPS_FILE).open("wb") as side:
        for si, users in enumerate(USERS):
            label = f"concurrency@{users}"
            count = per_stage if si < len(USERS) - 1 else n - per_stage * (len(USERS) - 1)
            tpot = 0.010 + 0.0006 * users
            ttft = rng.gamma(4.0, (0.04 + 0.004 * users) / 4.0, count)
            duration = float(count * (ttft.mean() + 64 * tpot) / users)
            start = t + rng.uniform(0.0, duration, count)
            cls = rng.choice(len(CLASSES), size=count, p=[c[1] for c in CLASSES])
            err_u = rng.uniform(size=count)
            prompt = rng.integers(64, 2048, count)
            lines = []
            for i in range(count):
                name, _, streamed, _ = CLASSES[cls[i]]
                s = float(start[i])
                rec: dict[str, object] = {
                    "run_id": "bench",
                    "stage": label,
                    "request_class": name,
                    "endpoint": "http://127.0.0.1:8000/v1/chat/completions",
                    "worker": "w0",
                    "seq": si * per_stage + i,
                    "scheduled_at": s - abs(rng.normal(0.0003, 0.0002)),
                    "started_at": s,
                    "attempt": 0,
                    "max_tokens": 65,
                    "server_request_id": f"req-{si}-{i}",
                }
                e = err_u[i]
                share = ERROR_SHARE[si]
                if e < share:
                    kind = (
                        "rate_limited"
                        if e < share / 2
                        else ("server_error" if e < share * 0.8 else "timeout")
                    )
                    rec.update(
                        first_token_at=None,
                        last_token_at=None,
                        ended_at=s + 0.01,
                        status={"rate_limited": 429, "server_error": 500, "timeout": None}[kind],
                        error_class=kind,
                        error_detail=_RATE_LIMIT_DETAIL if kind == "rate_limited" else f"{kind} detail",
                        retry_after_s=1.0 if kind == "rate_limited" else None,
                        prompt_tokens=None,
                        output_tokens=None,
                        token_source=None,
                        client_output_tokens=None,
                        finish_reason=None,
                        gap_offset=None,
                        gap_count=None,
                    )
                else:
                    first = s + float(ttft[i])
                    gaps = rng.gamma(8.0, tpot / 8.0, 64) if streamed else None
                    last = first + (float(gaps.sum()) if gaps is not None else 64 * tpot)
                    rec.update(
                        first_token_at=first,
                        last_token_at=last,
                        ended_at=last + 0.0002,
                        status=200,
                        error_class=None,
                        error_detail=None,
                        retry_after_s=None,
                        prompt_tokens=int(prompt[i]),
                        output_tokens=65,
                        token_source="usage",
                        client_output_tokens=65 if streamed else None,
                        finish_reason="length",
                        gap_offset=written if gaps is not None else None,
                        gap_count=gaps.size if gaps is not None else None,
                    )
                    if gaps is not None:
                        side.write(gaps.astype("<f4").tobytes())
                        written += gaps.size
                lines.append(orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY))
                if len(lines) >= 10_000:
                    fh.write(b"\n".join(lines) + b"\n")
                    lines.clear()
            if lines:
                fh.write(b"\n".join(lines) + b"\n")
            end = float(start.max()) + 5.0
            stages.append(
                {
                    "label": label,
                    "start": t,
                    "window_end": t + duration,
                    "end": end,
                    "target": {"kind": "concurrency", "users": users},
                }
            )
            t = end + 1.0
    spec = RunSpec(
        run_id="bench",
        name="bench",
        out_dir=str(run_dir),
        endpoint=EndpointSpec(base_url="http://127.0.0.1:9/v1", model="bench"),
        request_classes=tuple(RequestClass(name=c[0], weight=c[1], stream=c[2], slo=c[3]) for c in CLASSES),
        stages=tuple(Stage(kind="concurrency", users=u, duration_s=1.0) for u in USERS),  # windows below
    )
    manifest = Manifest(
        format=FORMAT,
        run_id="bench",
        name="bench",
        status="complete",
        seed=0,
        created_at=0.0,
        command=("analysis_bench",),
        versions={},
        host=Host("bench", os.cpu_count()),
        spec=spec,
        simulator=None,
        distribution=RunDistribution(1, 0),
    ).to_dict()
    manifest["stages"] = stages  # the windows as the runner writes them
    (run_dir / MANIFEST_FILE).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


def measure(run_dir: Path) -> dict[str, float]:
    """Open the run + summaries + capacity in this process, out of core (:mod:`analysis.scan`); returns seconds
    per phase and peak RSS (MB). The capacity's per-stage points are computed in the summaries' pass over the
    stages: their time is taken out of it and counted as capacity (timed by wrapping the functions the pass calls,
    as ``report_bench.py`` does: no timer in the product code)."""
    import analysis.scan as scan_module
    from analysis import class_slos

    spent = {"capacity": 0.0}
    for name in ("_stage_point", "capacity_of_points", "server_metrics_of"):
        setattr(scan_module, name, _timed(getattr(scan_module, name), spent))

    t0 = time.perf_counter()
    scan = scan_module.open_scan(run_dir)
    t1 = time.perf_counter()
    slos = class_slos(scan.manifest.spec.request_classes)
    result = scan_module.summarize_scan(scan, slos, scan.manifest.stage_order, by_stage=False)
    t3 = time.perf_counter()
    cap = result.capacity
    assert len(result.stages) == len(USERS) and len(result.classes) == len(CLASSES) and cap is not None
    return {
        "records": float(scan.requests),
        "load_s": t1 - t0,
        "summaries_s": t3 - t1 - spent["capacity"],
        "capacity_s": spent["capacity"],
        "total_s": t3 - t0,
        "peak_rss_mb": peak_rss_mb(),
        "x_star_rps": cap.max_rps if cap.max_rps is not None else float("nan"),
    }


def _timed(fn: Callable[..., Any], spent: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent["capacity"] += time.perf_counter() - t0

    return wrapper


def measure_export(run_dir: Path, fmt: ExportFormat, out: Path) -> dict[str, float]:
    """``loadtest export``'s work in this process: seconds per phase, peak RSS (MB) and the file's size (MB)."""
    from analysis import load_run, require_records
    from reports.export import export_table, write_export

    t0 = time.perf_counter()
    data = require_records(load_run(run_dir))
    t1 = time.perf_counter()
    table = export_table(data, fmt)
    t2 = time.perf_counter()
    write_export(table, fmt, str(out))
    t3 = time.perf_counter()
    return {
        "records": float(table.num_rows),
        "load_s": t1 - t0,
        "table_s": t2 - t1,
        "write_s": t3 - t2,
        "total_s": t3 - t0,
        "peak_rss_mb": peak_rss_mb(),
        "file_mb": out.stat().st_size / 1e6,
    }


def ensure_cache(run_dir: Path) -> None:
    """Write the run's columnar copy unless it is there and current, and say how long it took."""
    from analysis.columnar import open_cache

    if not (run_dir / RECORDS_CACHE).exists():
        t0 = time.perf_counter()
        open_cache(run_dir / "records.jsonl")
        size = (run_dir / RECORDS_CACHE).stat().st_size
        print(f"wrote {RECORDS_CACHE} ({size / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/loadtest-analysis-bench"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--export", choices=["parquet", "csv"], help="time loadtest export instead")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run_dir: Path = args.dir / f"run-{args.records}"
    if args.measure_only:
        if args.export:
            print(json.dumps(measure_export(run_dir, args.export, args.dir / f"export.{args.export}")))
        else:
            print(json.dumps(measure(run_dir)))
        return
    ensure_run(run_dir, args.records, generate)
    ensure_cache(run_dir)
    repeat_in_children(
        __file__,
        [
            "--records",
            str(args.records),
            "--dir",
            str(args.dir),
            "--measure-only",
            *(["--export", args.export] if args.export else []),
        ],
        args.repeat,
    )


if __name__ == "__main__":
    main()
