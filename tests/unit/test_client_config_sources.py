"""Every Kafka client of the product is built from the one security-aware config function.

A client built from a hand-written dict would connect without the cluster's TLS, SASL or extra properties:
it works on a PLAINTEXT test broker and fails (or, worse, connects to the wrong listener) on a secured one.
The test reads the source (AST) of every product package and follows each ``Consumer(...)``,
``Producer(...)``, ``AdminClient(...)`` and Quix ``Application(...)`` config back to
``KafkaSecuritySettings.client_config`` (or the contenders' ``kafka_client_config``, which calls it):
through ``{**config, ...}`` spreads, local variables, helper functions that return such a dict, and the
parameters of functions whose every caller passes one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("actors", "clickcash", "cluster", "config", "loadtest", "router")
CLIENTS = {"Consumer", "Producer", "AdminClient", "consumer_factory", "producer_factory"}
"""the clients, and the router's injectable factories of them (called with the config it builds)"""
SOURCES = {"client_config", "kafka_client_config"}


@dataclass(frozen=True)
class _Func:
    node: ast.FunctionDef
    path: Path


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


class _Index:
    def __init__(self, files: list[Path]) -> None:
        self.trees = {p: ast.parse(p.read_text(), str(p)) for p in files}
        self.funcs: dict[str, list[_Func]] = {}
        self.parent: dict[ast.AST, ast.AST] = {}
        for path, tree in self.trees.items():
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    self.parent[child] = node
                if isinstance(node, ast.FunctionDef):
                    self.funcs.setdefault(node.name, []).append(_Func(node, path))

    def enclosing(self, node: ast.AST) -> ast.FunctionDef | None:
        cur: ast.AST | None = node
        while cur is not None:
            cur = self.parent.get(cur)
            if isinstance(cur, ast.FunctionDef):
                return cur
        return None

    def calls(self) -> list[tuple[Path, ast.Call]]:
        return [(p, n) for p, t in self.trees.items() for n in ast.walk(t) if isinstance(n, ast.Call)]

    def sourced(self, expr: ast.expr | None, at: ast.AST, seen: frozenset[int] = frozenset()) -> bool:
        """Whether ``expr`` (evaluated at ``at``) is a config dict built by the one function."""
        if expr is None or id(expr) in seen:
            return False
        seen = seen | {id(expr)}
        if isinstance(expr, ast.Call):
            name = _name(expr.func)
            if name in SOURCES:
                return True
            defs = self.funcs.get(name or "", [])
            return bool(defs) and all(self._returns_sourced(d.node, seen) for d in defs)
        if isinstance(expr, ast.Dict):
            return any(
                k is None and self.sourced(v, at, seen) for k, v in zip(expr.keys, expr.values, strict=True)
            )
        if isinstance(expr, ast.Name):
            return self._name_sourced(expr.id, at, seen)
        return False

    def _returns_sourced(self, func: ast.FunctionDef, seen: frozenset[int]) -> bool:
        returns = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
        return bool(returns) and all(self.sourced(r.value, r, seen) for r in returns)

    def _name_sourced(self, name: str, at: ast.AST, seen: frozenset[int]) -> bool:
        func = self.enclosing(at)
        if func is None:
            return False
        assigned = [
            n.value
            for n in ast.walk(func)
            if isinstance(n, ast.Assign | ast.AnnAssign)
            and any(
                isinstance(t, ast.Name) and t.id == name
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            )
        ]
        if assigned:
            return all(self.sourced(v, func, seen) for v in assigned)
        params = [a.arg for a in func.args.posonlyargs + func.args.args]
        kwonly = [a.arg for a in func.args.kwonlyargs]
        if name not in params and name not in kwonly:
            return False
        callers = [(p, c) for p, c in self.calls() if _name(c.func) == func.name]
        if not callers:
            return False
        for _, call in callers:
            arg: ast.expr | None = next((k.value for k in call.keywords if k.arg == name), None)
            if arg is None and name in params and params.index(name) < len(call.args):
                arg = call.args[params.index(name)]
            if not self.sourced(arg, call, seen):
                return False
        return True


def _product_files() -> list[Path]:
    return sorted(p for pkg in PRODUCT_PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _client_configs(index: _Index) -> list[tuple[str, ast.expr | None, ast.Call]]:
    """(where, config expression, call) of every Kafka client the product builds."""
    found: list[tuple[str, ast.expr | None, ast.Call]] = []
    for path, call in index.calls():
        name = _name(call.func)
        where = f"{path.relative_to(REPO)}:{call.lineno} {name}"
        if name in CLIENTS:
            conf = (
                call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "conf"), None)
            )
            found.append((where, conf, call))
        elif name == "Application":  # Quix Streams: broker_address carries the brokers only
            for kw in ("consumer_extra_config", "producer_extra_config"):
                value = next((k.value for k in call.keywords if k.arg == kw), None)
                found.append((f"{where} {kw}", value, call))
    return found


def test_every_kafka_client_is_built_from_the_one_config_function() -> None:
    index = _Index(_product_files())
    configs = _client_configs(index)
    # the scan sees the clients it is meant to police (router, offsets, verifier, loadgen, compare)
    seen = {where.split(":")[0] for where, _, _ in configs}
    for expected in (
        "router/_router.py",
        "cluster/offsets.py",
        "cluster/verify.py",
        "cluster/outputs.py",
        "cluster/topics.py",
        "loadtest/traffic/campaign_run.py",
        "loadtest/locust_run/locustfile.py",
        "loadtest/contenders/compare.py",
        "loadtest/contenders/passthrough.py",
        "loadtest/contenders/quix.py",
    ):
        assert expected in seen, f"no Kafka client found in {expected}: the scan is broken"
    stray = [where for where, conf, call in configs if not index.sourced(conf, call)]
    assert stray == [], f"Kafka clients not built from client_config(): {stray}"


@pytest.mark.parametrize(
    "source",
    [
        'def f(b):\n    return Consumer({"bootstrap.servers": b, "group.id": "g"})\n',
        "def f(conf):\n    return Producer(conf)\n\ndef g():\n    return f({'bootstrap.servers': 'x'})\n",
        "def f(k):\n    extra = {'acks': 'all'}\n    return Producer(extra)\n",
    ],
)
def test_the_scan_flags_a_client_built_from_a_hand_written_dict(source: str, tmp_path: Path) -> None:
    path = tmp_path / "mod.py"
    path.write_text(source)
    index = _Index([path])
    configs = [
        (conf, call) for p, call in index.calls() if _name(call.func) in CLIENTS for conf in call.args[:1]
    ]
    assert configs
    assert not all(index.sourced(conf, call) for conf, call in configs)


def test_the_scan_follows_spreads_helpers_and_parameters(tmp_path: Path) -> None:
    path = tmp_path / "mod.py"
    path.write_text(
        "def conf(s):\n    return {**s.kafka.client_config(), 'group.id': 'g'}\n\n"
        "def send(producer_config):\n    return Producer({**producer_config, 'acks': 'all'})\n\n"
        "def main(s):\n    c = Consumer(conf(s))\n    send({**s.kafka.client_config()})\n"
    )
    index = _Index([path])
    configs = [
        (conf, call) for p, call in index.calls() if _name(call.func) in CLIENTS for conf in call.args[:1]
    ]
    assert len(configs) == 2
    assert all(index.sourced(conf, call) for conf, call in configs)
