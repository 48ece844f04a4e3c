"""The wheel lists its packages by name (``pyproject.toml``): a new subpackage that is not listed is missing
from an installed clickcash while every checkout test still passes (the checkout imports it from disk)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shipped_packages() -> set[str]:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(setuptools["packages"])


def packages_on_disk() -> set[str]:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found: set[str] = set()
    for name, folder in setuptools["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if init.parent.is_symlink() or any(p.is_symlink() for p in init.parents if root in p.parents):
                continue
            found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_of_the_checkout_is_in_the_wheel() -> None:
    on_disk = packages_on_disk()
    assert "clickcash.cluster.ledger" in on_disk and "clickcash.testing" in on_disk
    assert sorted(on_disk - shipped_packages()) == []
