"""A Python scenario: a module of Locust users whose tasks are flows of model calls (``docs/scenarios-python.md``).

``loadtest run my_flow.py`` or a TOML scenario's ``[python]`` table::

    [python]
    module = "my_flow.py"             # relative to the TOML file's folder
    users = ["Conversation"]          # which user classes (default: every FlowUser the module defines)
    slo = {flow_e2e_p95 = "10s"}      # the flow SLO: a flow's first call's start to its last call's end
    flow_tokens = [2000, 400]         # optional: expected input, output tokens per flow (token-rate stages' start)

The module is never imported here, nor anywhere in the CLI: only the engine process runs user code (its gevent
door). Here it is read and *compiled*, so a syntax error is one line naming the file and line before any load; its
text travels in the run's spec, so a worker on another machine runs exactly the module the master was given. The
``[python]`` table is parsed by :mod:`loadtest.spec.pytable`, the flags by :mod:`loadtest.spec.assemble`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from loadtest.errors import ConfigError

__all__ = [
    "DEFAULT_FLOW_TOKENS",
    "FLOW_SLO_METRICS",
    "PYTHON_KEYS",
    "SCENARIO_FAILED",
    "PythonScenario",
    "flow_latency_percentile",
    "read_module",
    "scenario_failure",
]

PYTHON_KEYS: Final = frozenset({"module", "users", "slo", "flow_tokens"})
FLOW_SLO_METRICS: Final = ("flow_e2e",)
SCENARIO_FAILED: Final = "scenario:"  # how the engine log says the module could not be loaded (one line)


def flow_latency_percentile(key: str) -> float | None:
    """The percentile of a flow latency SLO key — ``flow_e2e_p95`` → 95.0: a metric of :data:`FLOW_SLO_METRICS`,
    ``_p`` and a decimal number in (0, 100) — or None for any other key (``attainment``, ``flow_e2e_p100``). The one
    parser of these keys: ``[python] slo``, ``--slo`` and the flow analysis use it."""
    metric, sep, pct = key.rpartition("_p")
    if not sep or metric not in FLOW_SLO_METRICS or not pct.replace(".", "", 1).isdigit():
        return None
    q = float(pct)
    return q if 0 < q < 100 else None


DEFAULT_FLOW_TOKENS: Final = (
    1000.0,
    250.0,
)  # a token-rate stage's first guess per flow, until flows complete


@dataclass(frozen=True, slots=True)
class PythonScenario:
    """The module (its path as given, and its text), the user classes to run, the flow SLO (seconds) and the
    expected tokens per flow a token-rate stage starts from."""

    module: str
    source: str
    users: tuple[str, ...] = ()
    slo: dict[str, float] = field(default_factory=dict)
    flow_tokens: tuple[float, float] = DEFAULT_FLOW_TOKENS

    @property
    def file_name(self) -> str:
        return Path(self.module).name

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "source": self.source,
            "users": list(self.users),
            "slo": dict(self.slo),
            "flow_tokens": list(self.flow_tokens),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PythonScenario:
        tokens = raw.get("flow_tokens") or DEFAULT_FLOW_TOKENS
        return cls(
            module=str(raw["module"]),
            source=str(raw["source"]),
            users=tuple(str(u) for u in raw.get("users", ())),
            slo={str(k): float(v) for k, v in (raw.get("slo") or {}).items()},
            flow_tokens=(float(tokens[0]), float(tokens[1])),
        )


def read_module(path: Path) -> str:
    """The module's text, compiled once: a syntax error is one line ``file:line: message``."""
    if not path.is_file():
        raise ConfigError(f"no Python scenario at {path}")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{path.name}:{exc.lineno}" if exc.lineno else path.name
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc.msg}") from None
    except ValueError as exc:  # null bytes
        raise ConfigError(f"{path.name}: {exc}") from None
    return source


def scenario_failure(engine_log: Path) -> str | None:
    """The engine's one line about a module it could not load (the text after :data:`SCENARIO_FAILED`), if any."""
    try:
        lines = engine_log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(SCENARIO_FAILED):
            return line[len(SCENARIO_FAILED) :].strip()
    return None
