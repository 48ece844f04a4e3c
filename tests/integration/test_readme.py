"""The README's and docs' shell blocks, run verbatim as a newcomer runs them, on a stack nobody warmed up.

Each document is one test: its ```bash blocks run in order (``tests/integration/_docblocks.py`` has the
convention: ``<!-- not-run: REASON -->`` before a fence, ``<!-- expect: TEXT -->`` after it) with ``bash -e``
from the repository root, ``.venv/bin`` first on ``PATH`` and a cache folder of the test's own
(``CLICKCASH_CACHE_DIR``; only the Kafka jars are shared), so ``clickcash services start`` starts a new broker
and nothing recorded by another run is reused. Services a document leaves running are stopped by pid (through
``clickcash services stop``, which reads the recorded pids) when its test ends.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from clickcash.cluster.local.stack import CACHE_DIR
from tests.integration._docblocks import Block, extract_blocks

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if "```bash" in p.read_text()
]
"""the README and every page of docs/ with a shell block"""
BLOCK_TIMEOUT_S = 300
"""one block at most; the whole of every document's runnable blocks is a few minutes"""
_SHARED_CACHE = ("kafka-4.1.1", "m2")
"""cache entries a fresh stack may reuse: downloaded jars, no state"""


def _environment(cache: Path) -> dict[str, str]:
    # a suite started by make (make test ARGS=...) hands its command-line variables to every make below it
    # through MAKEFLAGS: a block's `make demo` must run as a reader's would
    inherited_make = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARGS")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLICKCASH_", "RAY_")) and k not in inherited_make
    }
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["CLICKCASH_CACHE_DIR"] = str(cache)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _fresh_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in _SHARED_CACHE:
        if (CACHE_DIR / name).exists():
            (cache / name).symlink_to((CACHE_DIR / name).resolve())
    return cache


def _run(block: Block, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.name} exited {done.returncode}:\n{block.code}\n{output[-4000:]}"
    assert "Traceback" not in output, f"{block.name} printed a traceback:\n{output[-4000:]}"
    for text in block.expects:
        assert text in output, f"{block.name}: {text!r} not in its output:\n{output[-4000:]}"
    return output


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(p.relative_to(REPO)) for p in DOCUMENTS])
def test_the_documents_shell_blocks_run_as_written(document: Path, tmp_path: Path) -> None:
    blocks = extract_blocks(str(document.relative_to(REPO)), document.read_text())
    env = _environment(_fresh_cache(tmp_path))
    try:
        for block in blocks:
            if block.not_run is None:
                _run(block, env)
    finally:
        subprocess.run(
            ["clickcash", "services", "stop"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_the_readme_and_the_load_test_page_are_among_them() -> None:
    assert {"README.md", "loadtest.md"} <= {p.name for p in DOCUMENTS}
