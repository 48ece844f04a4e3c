"""The app's core path runs without the ``clickcash[loadtest]`` extra: no Locust, no matplotlib."""

from __future__ import annotations

import subprocess
import sys

CORE = """
import sys
for name in ("locust", "matplotlib"):
    sys.modules[name] = None  # an import of either now fails
import clickcash.paths, clickcash.cluster.app, clickcash.loadtest.traffic.campaign_run, clickcash.router.actor
from clickcash.cli import build_parser
build_parser().format_help()
"""


def test_core_path_imports_without_loadtest_tooling() -> None:
    done = subprocess.run([sys.executable, "-c", CORE], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
