"""The Makefile's interpreter choice (cluster/local/pick_python.py): the fastest build of python3's
version, and python3 itself unless another is clearly faster."""

from __future__ import annotations

import os
import subprocess
import sys

from clickcash.cluster.local.pick_python import KEEP_DEFAULT_WITHIN, choose
from clickcash.paths import checkout_root

DEFAULT = ("/opt/pyenv/python3.11", "3.11", "3.11.7", 0.150)


def test_a_build_of_the_same_version_that_is_clearly_faster_is_chosen() -> None:
    fast = ("/usr/bin/python3.11", "3.11", "3.11.2", 0.092)
    assert choose(DEFAULT, [DEFAULT, fast]) == fast


def test_python3_stays_when_no_other_build_beats_it_by_more_than_the_margin() -> None:
    close = ("/usr/bin/python3.11", "3.11", "3.11.2", DEFAULT[3] / KEEP_DEFAULT_WITHIN * 1.01)
    assert choose(DEFAULT, [DEFAULT, close]) == DEFAULT


def test_another_python_version_is_never_chosen_however_fast() -> None:
    other = ("/usr/bin/python3.12", "3.12", "3.12.1", 0.010)
    assert choose(DEFAULT, [DEFAULT, other]) == DEFAULT


def test_the_script_prints_an_interpreter_of_python3_s_version() -> None:
    root = checkout_root()
    assert root is not None, "runs from a source checkout"
    script = root / "cluster" / "local" / "pick_python.py"
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    chosen = out.stdout.strip()
    assert os.access(chosen, os.X_OK), out
    version = subprocess.run(
        [chosen, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    python3 = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == python3
    assert chosen in out.stderr
