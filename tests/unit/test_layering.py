"""Boundaries: gevent enters only through the engine's door modules; each package's public surface is explicit."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("loadtest", "analysis", "reports", "scenarios")
# the modules that import locust / gevent: they run only in the engine's child process
GEVENT_DOOR = (
    "loadtest.engine.gevent_transport",
    "loadtest.engine.roles",
    "loadtest.engine.users",
    "loadtest.engine.flows",  # a Python scenario's users
    "loadtest.engine.scenario_module",  # the import of a Python scenario's module (which imports loadtest.flows)
    "loadtest.flows",  # the scenario API: what a scenario module imports, in the engine process only
)
GEVENT_ROOTS = ("gevent", "geventhttpclient", "locust")


def every_module() -> list[str]:
    names = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + ".")]
    return names


def all_modules() -> list[str]:
    return [n for n in every_module() if n not in GEVENT_DOOR and not n.endswith(".__main__")]


def imports_gevent_itself(name: str) -> bool:
    """Whether the module's own source has an ``import gevent…`` / ``import locust…`` statement."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = [node.module.split(".")[0]]
        else:
            continue
        if any(root in GEVENT_ROOTS for root in roots):
            return True
    return False


def imports_door_module(name: str) -> bool:
    """Whether the module's own source imports one of the door's modules."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.ImportFrom) and node.module in GEVENT_DOOR and node.module != name
        for node in ast.walk(tree)
    )


def test_gevent_door_lists_exactly_the_modules_that_import_gevent() -> None:
    """The door is the modules that import gevent / locust themselves, and those that import one of them."""
    importers = {n for n in every_module() if not n.endswith(".__main__") and imports_gevent_itself(n)}
    through = {n for n in GEVENT_DOOR if n not in importers and imports_door_module(n)}
    assert importers | through == set(GEVENT_DOOR)


def test_nothing_but_the_engine_imports_gevent() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {all_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'locust', 'geventhttpclient'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"


@pytest.mark.parametrize("name", GEVENT_DOOR)
def test_every_door_module_does_import_gevent(name: str) -> None:
    code = f"import sys, {name}\nprint(sorted(root for root in {GEVENT_ROOTS!r} if root in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    wanted = ["gevent"] if name.endswith("gevent_transport") else list(GEVENT_ROOTS)
    assert out.stdout.strip() == repr(wanted)


def test_the_engine_monkey_patches_before_anything_imports_ssl_or_socket() -> None:
    code = (
        "import sys\n"
        "from gevent import monkey\n"
        "patch_all, seen = monkey.patch_all, []\n"
        "def spy(*args, **kwargs):\n"
        "    seen.append(sorted(m for m in ('ssl', 'socket', 'httpx', 'http.client') if m in sys.modules))\n"
        "    return patch_all(*args, **kwargs)\n"
        "monkey.patch_all = spy\n"
        "import loadtest.engine.roles\n"
        "print(seen[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", [m for m in all_modules() if not m.startswith("scenarios")])
def test_every_module_declares_all_and_it_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


@pytest.mark.parametrize("pkg_name", ["analysis", "reports"])
def test_package_all_lists_every_public_name(pkg_name: str) -> None:
    pkg = importlib.import_module(pkg_name)
    public = sorted(n for n, v in vars(pkg).items() if not n.startswith("_") and not isinstance(v, type(sys)))
    assert sorted(pkg.__all__) == public


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # the run-directory contract sits below the engine, the runner and the analysis
        (
            "loadtest.rundir",
            ("analysis", "loadtest.runner", "loadtest.engine", "loadtest.cli", "loadtest.sim.server", "pandas",
             "pyarrow", "gevent"),
        ),
        # the analysis reads the simulator's settings and sizing, never its server
        ("analysis", ("loadtest.sim.server", "loadtest.sim.app", "loadtest.sim.http11", "loadtest.runner", "gevent")),
    ],
)  # fmt: skip
def test_imports_go_one_way(module: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {module}\nprint(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = out.stdout.strip().split(",")
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert bad == [], f"{module} imports {bad}"


def _contracts() -> list[dict[str, object]]:
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_the_layer_contract_places_every_part_of_the_tree() -> None:
    """A subpackage (or top-level module) missing from the layers would be free to import anything."""
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in str(layer).split("|")}  # type: ignore[attr-defined]
    loadtest = importlib.import_module("loadtest")
    parts = {
        f"loadtest.{m.name}" for m in pkgutil.iter_modules(loadtest.__path__) if m.name not in ("__main__",)
    }
    assert parts | {"analysis", "reports", "scenarios"} == placed


def test_the_gevent_contract_covers_everything_outside_the_door() -> None:
    (contract,) = [c for c in _contracts() if str(c["name"]).startswith("Only the engine's door")]
    sources = set(contract["source_modules"])  # type: ignore[call-overload]
    uncovered = [
        name
        for name in all_modules()
        if name.split(".")[0] != "tests"
        and not any(name == s or name.startswith(s + ".") for s in sources)
        and name not in ("loadtest", "loadtest.engine")
    ]
    assert uncovered == []


def test_import_contracts_hold() -> None:
    """The contracts in pyproject.toml, as CI checks them (``lint-imports``)."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout[-3000:]
