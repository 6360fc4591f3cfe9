"""Loading a Python scenario's module in the engine process (``docs/scenarios-python.md``): its text, shipped in the
run's spec, executed as its own file, and the user classes to run picked from it. Part of the engine's gevent door:
the module imports :mod:`loadtest.flows`, and only the engine process imports it, after
:mod:`loadtest.engine.roles` has monkey-patched the process."""

from __future__ import annotations

import linecache
import re
import sys
import types
from pathlib import Path

from loadtest.engine.flows import FlowUser, ScenarioModuleError, innermost_line
from loadtest.spec.pyscenario import PythonScenario

__all__ = ["load_users"]


def load_users(python: PythonScenario) -> list[type[FlowUser]]:
    """Import the scenario's module from its text (as its file) and return the user classes to run: those named by
    ``python.users``, else every concrete FlowUser it defines. Any mistake is one :class:`ScenarioModuleError`
    line naming the file (and the line, for an exception while importing it)."""
    path = python.module
    stem = re.sub(r"\W", "_", Path(path).stem)
    name = f"loadtest_scenario_{stem}"
    module = types.ModuleType(name)
    module.__file__ = path
    lines = python.source.splitlines(keepends=True)
    linecache.cache[path] = (len(python.source), None, lines, path)  # tracebacks show the lines shipped
    sys.modules[name] = module
    folder = str(Path(path).parent)
    if Path(folder).is_dir() and folder not in sys.path:
        sys.path.insert(
            0, folder
        )  # its sibling modules import, as a locustfile's do (on each worker's machine)
    try:
        exec(compile(python.source, path, "exec"), module.__dict__)
    except ScenarioModuleError as exc:
        raise ScenarioModuleError(f"{Path(path).name}: {exc}") from None
    except Exception as exc:
        where = innermost_line(exc, path) or Path(path).name
        raise ScenarioModuleError(f"{where}: {type(exc).__name__}: {exc}") from None
    found = {
        value.__name__: value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, FlowUser) and not value.__dict__.get("abstract")
    }
    if python.users:
        missing = [u for u in python.users if u not in found]
        if missing:
            raise ScenarioModuleError(
                f"{Path(path).name}: no FlowUser {', '.join(missing)} (it defines: {', '.join(found) or 'none'})"
            )
        chosen = [found[u] for u in python.users]
    else:
        chosen = list(found.values())
    if not chosen:
        raise ScenarioModuleError(
            f"{Path(path).name} defines no FlowUser subclass (class MyUser(FlowUser) with a @task method)"
        )
    for cls in chosen:
        if not cls.tasks:
            raise ScenarioModuleError(f"{Path(path).name}: {cls.__name__} has no @task")
    return chosen
