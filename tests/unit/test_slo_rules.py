"""The SLO recording and alert rules (cluster/deploy/prometheus/slo-rules.yaml) are valid Prometheus rules,
and their unit tests (slo-rules.test.yaml: input series and the alerts they must or must not fire) pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "cluster" / "deploy" / "prometheus"
EXTRACTED_PROMTOOL = ROOT / ".cache" / "prometheus-deb" / "root" / "usr" / "bin" / "promtool"


def _promtool() -> str:
    found = shutil.which("promtool") or (str(EXTRACTED_PROMTOOL) if EXTRACTED_PROMTOOL.exists() else None)
    assert found, (
        "promtool not found: run `make system-deps` (extracts it from Debian's prometheus package into "
        ".cache/prometheus-deb) or `apt-get install prometheus`"
    )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_slo_rules_are_valid() -> None:
    out = _run("check", "rules", "slo-rules.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_slo_rule_unit_tests_pass() -> None:
    out = _run("test", "rules", "slo-rules.test.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
