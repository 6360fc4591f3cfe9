"""A TOML scenario's ``[python]`` table and its ``[[classes]]`` as a Python scenario's steps
(:mod:`loadtest.spec.pyscenario` holds what they describe; ``docs/scenarios-python.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.client.protocol import RequestClass
from loadtest.errors import ConfigError
from loadtest.spec.pyscenario import DEFAULT_FLOW_TOKENS, PYTHON_KEYS, PythonScenario, read_module
from loadtest.spec.slos import parse_flow_slo, parse_slo, slo_for
from loadtest.spec.tables import check_keys as _check_keys
from loadtest.spec.tables import table as _table

__all__ = ["parse_python", "step_class"]


def parse_python(raw: Any, base: Path | None) -> PythonScenario:
    """A TOML scenario's ``[python]`` table (``base``: the TOML file's folder, for a relative module path)."""
    where = "[python]"
    tbl = _table(raw, where)
    _check_keys(tbl, PYTHON_KEYS, where)
    module = tbl.get("module")
    if not isinstance(module, str) or not module:
        raise ConfigError(f'{where}.module must name a Python file, e.g. module = "my_flow.py"')
    path = Path(module)
    if not path.is_absolute() and base is not None:
        path = base / path
    users = tbl.get("users", [])
    if not isinstance(users, list) or not all(isinstance(u, str) and u.isidentifier() for u in users):
        raise ConfigError(f"{where}.users must be a list of class names, got {users!r}")
    tokens = tbl.get("flow_tokens", list(DEFAULT_FLOW_TOKENS))
    if (
        not isinstance(tokens, list)
        or len(tokens) != 2
        or not all(isinstance(t, int | float) and not isinstance(t, bool) and t > 0 for t in tokens)
    ):
        raise ConfigError(f"{where}.flow_tokens must be [input, output] tokens per flow, both > 0")
    return PythonScenario(
        module=str(path),
        source=read_module(path),
        users=tuple(users),
        slo=parse_flow_slo(tbl.get("slo", {}), f"{where}.slo"),
        flow_tokens=(float(tokens[0]), float(tokens[1])),
    )


_STEP = {"name", "kind", "slo"}


def step_class(raw: Any, i: int) -> RequestClass:
    """A Python scenario's ``[[classes]]`` entry: a step (the calls' ``name=``) with its kind and SLOs; what it
    sends is the module's business, so no lengths, dataset or weight."""
    where = f"classes[{i}]"
    table = _table(raw, where)
    _check_keys(table, _STEP, where)
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must name a step (the calls' name=...)")
    kind = table.get("kind", "chat")
    if kind not in ("chat", "completions", "embeddings"):
        raise ConfigError(f"{where}.kind must be chat, completions or embeddings, got {kind!r}")
    slo = parse_slo(table.get("slo", {}), f"{where}.slo")
    if slo_for(kind, slo) != slo:
        raise ConfigError(f"{where}.slo: an embeddings step produces no tokens, so it has no tpot or itl SLO")
    return RequestClass(name=name, kind=kind, stream=kind != "embeddings", slo=slo)
