"""The wheel installs one top-level name, ``clickcash``, and its command runs from a fresh virtualenv.

The wheel is built the way ``pip install .`` builds it (isolated build with the pinned setuptools). The fresh
virtualenv gets the wheel with ``--no-deps`` and sees the dependencies already resolved in the project's
``.venv`` through a ``.pth`` line (so the test needs no index for them); the project checkout itself is
never on its path, so what runs is what the wheel installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600)


@pytest.mark.integration
def test_wheel_has_one_top_level_name_and_its_command_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], tmp_path
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("clickcash-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"clickcash"}
    for expected in (
        "clickcash/cli.py",
        "clickcash/router/__init__.py",
        "clickcash/actors/shard.py",
        "clickcash/config/clickcash.toml",
        "clickcash/config/schemas/",
        "clickcash/cluster/__init__.py",
        "clickcash/loadtest/__init__.py",
    ):
        assert any(n.startswith(expected) for n in names), f"{expected} missing from {wheel.name}"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))
    # the project venv's dependencies, but not its editable clickcash (an editable finder is loaded by a
    # .pth file of a site directory; a directory added by a .pth line is not one)
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_dir / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        tmp_path,
    )
    assert installed.returncode == 0, installed.stderr

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "CLICKCASH_CACHE_DIR"}}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    exe = env_dir / "bin" / "clickcash"
    version = _run([str(exe), "--version"], tmp_path, env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "clickcash 0.1.0"
    helped = _run([str(exe), "--help"], tmp_path, env)
    assert helped.returncode == 0, helped.stderr
    assert "demo" in helped.stdout
    assert "loadtest" in helped.stdout

    where = _run(
        [
            str(env_dir / "bin" / "python"),
            "-c",
            "import clickcash, clickcash.router; from clickcash.paths import cache_dir; "
            "print(clickcash.__file__); print(clickcash.router.Router.__module__); print(cache_dir())",
        ],
        tmp_path,
        env,
    )
    assert where.returncode == 0, where.stderr
    module_file, router_module, cache = where.stdout.split("\n")[:3]
    assert Path(module_file).is_relative_to(purelib)
    assert router_module == "clickcash.router._router"
    assert Path(cache) == tmp_path / "xdg" / "clickcash"
