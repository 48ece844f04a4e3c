"""Imports point one way: a module imports only from its own layer or the layers below it, and never a
``_private`` module of another package.

The layer order, written once (lowest first):

- kernel: ``clickcash`` itself (events and envelope, errors, logging, histogram, schemas, paths): imports
  nothing of the project;
- ``config``: settings and the domain configuration;
- ``actors``: the shards, their engines and state, and the shard contract;
- ``router``: Kafka consumption, dispatch to the shards, transactions;
- ``cluster``: running the app (local services, Ray, observability, operator commands);
- ``loadtest``: traffic generation, Locust, analysis, the benchmark lab;
- the command line (``clickcash.cli``): the top floor, imported by nothing.

The benchmark lab (``clickcash.loadtest.contenders``) takes the shard and router apart to time their stages,
so it may
import their private modules; nothing else may.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["kernel", "config", "actors", "router", "cluster", "loadtest", "cli"]
TOP = {"config", "actors", "router", "cluster", "loadtest"}
CLI_MODULES = {"cli", "_cli_help"}
PRIVATE_ALLOWED_IN = ("loadtest/contenders/",)


def _package_of_file(rel: Path) -> str:
    if rel.parts[0] == "clickcash":
        return "cli" if rel.stem in CLI_MODULES else "kernel"
    return rel.parts[0]


def _package_of_module(module: str) -> tuple[str, list[str]] | None:
    """(layer, module path inside it) of an imported project module, None for a third-party one."""
    parts = module.split(".")
    if parts[0] == "clickcash":
        if len(parts) > 1 and parts[1] in TOP:
            return parts[1], parts[2:]
        if len(parts) > 1 and parts[1] in CLI_MODULES:
            return "cli", parts[1:]
        return "kernel", parts[1:]
    if parts[0] in TOP:
        return parts[0], parts[1:]
    return None


def _project_files() -> list[Path]:
    files: list[Path] = []
    for top in ["clickcash", *sorted(TOP)]:
        base = REPO / top
        for f in sorted(base.rglob("*.py")):
            rel = f.relative_to(REPO)
            if rel.parts[0] == "clickcash" and len(rel.parts) > 2:
                continue  # the checkout's symlinks clickcash/<pkg> -> ../<pkg>
            files.append(rel)
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse((REPO / path).read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return found


def layer_violations() -> list[str]:
    bad: list[str] = []
    for rel in _project_files():
        own = _package_of_file(rel)
        for line, module in _imports(rel):
            target = _package_of_module(module)
            if target is None:
                continue
            layer, inner = target
            where = f"{rel}:{line} imports {module}"
            if LAYERS.index(layer) > LAYERS.index(own):
                bad.append(f"{where} (upward: {own} -> {layer})")
            private = any(p.startswith("_") and not p.startswith("__") for p in inner)
            if private and layer != own and not rel.as_posix().startswith(PRIVATE_ALLOWED_IN):
                bad.append(f"{where} (private module of {layer})")
    return bad


def test_imports_point_down_and_respect_private_modules() -> None:
    assert layer_violations() == []


def test_the_check_can_fail() -> None:
    assert _package_of_module("clickcash.router._router") == ("router", ["_router"])
    assert _package_of_module("clickcash.loadtest.traffic.campaign") == ("loadtest", ["traffic", "campaign"])
    assert _package_of_module("clickcash.cli") == ("cli", ["cli"])
    assert _package_of_module("ray") is None
    assert LAYERS.index("loadtest") > LAYERS.index("cluster")


def duplicate_test_basenames(root: Path) -> dict[str, list[str]]:
    """Test module names used more than once under ``root``: pytest's rootdir-relative imports make a
    second ``test_x.py`` fail the whole collection (``import file mismatch``)."""
    seen: dict[str, list[str]] = {}
    for path in sorted(root.rglob("test_*.py")):
        seen.setdefault(path.name, []).append(path.relative_to(root).as_posix())
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


def test_every_test_module_has_a_name_of_its_own(tmp_path: Path) -> None:
    assert duplicate_test_basenames(Path(__file__).resolve().parents[1]) == {}
    (tmp_path / "unit").mkdir()
    (tmp_path / "integration").mkdir()
    (tmp_path / "unit" / "test_x.py").write_text("")
    (tmp_path / "integration" / "test_x.py").write_text("")
    assert duplicate_test_basenames(tmp_path) == {"test_x.py": ["integration/test_x.py", "unit/test_x.py"]}
