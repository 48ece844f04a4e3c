"""Where clickcash keeps runtime files (Kafka jars, service data, logs, Ray token): never inside the package.

Order: ``CLICKCASH_CACHE_DIR`` if set; else the checkout's ``.cache`` when running from a source checkout
(``pip install -e`` or ``PYTHONPATH=.``, recognised by the ``pyproject.toml`` beside the package folders);
else ``$XDG_CACHE_HOME/clickcash`` (``~/.cache/clickcash``). A wheel installed into site-packages therefore
never writes there. This module imports nothing of the project, so every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed wheel."""
    root = _PACKAGE_DIR.parent
    if (
        (root / "pyproject.toml").is_file()
        and (root / "clickcash").is_dir()
        and "site-packages" not in str(root)
    ):
        return root
    return None


def cache_dir() -> Path:
    """The directory for runtime files (see the module docstring for the order of choices)."""
    env = os.environ.get("CLICKCASH_CACHE_DIR")
    if env:
        return Path(env)
    root = checkout_root()
    if root is not None:
        return root / ".cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "clickcash"


def reports_dir() -> Path:
    """Default parent folder of load-test and benchmark reports: ``reports/`` of the checkout, else the
    current directory's ``reports/``."""
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "reports"
