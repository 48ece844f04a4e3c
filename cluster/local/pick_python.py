"""Print the fastest CPython on this machine of the same version as ``python3``: the Makefile builds
``.venv`` from it, and Ray's workers run on the virtualenv's interpreter.

Most of clickcash's CPU is Python bytecode, and builds of the same CPython version differ by much more than
the noise: on the 2-core machine of ``docs/benchmark.md`` (2026-12-05), a pyenv build without
profile-guided optimisation (first on ``PATH``) ran a loop of additions in 1.5-1.6x the time Debian's
own build took, and the shard's batch path in one process took ~1.3x the CPU. So the candidates (each
``python3``/``python3.X`` on ``PATH`` and in ``/usr/bin`` and ``/usr/local/bin``) are timed on such a loop,
and the fastest one that can create a virtualenv wins; within 10 % of ``python3`` itself, ``python3``
is kept. Standard library only: it runs before the virtualenv exists.

Usage: ``python3 cluster/local/pick_python.py`` prints the interpreter's path on stdout and one line on
stderr saying what was measured. ``make PYTHON=/path/to/python3`` skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

PROBE_STEPS = 1_000_000
"""additions each candidate is timed on (best of three)"""
KEEP_DEFAULT_WITHIN = 1.10
"""``python3`` stays unless another candidate is more than 10 % faster: timing noise must not flip it"""


def _candidates() -> list[str]:
    names = ["python3"] + [f"python3.{minor}" for minor in range(11, 20)]
    found: list[str] = []
    for name in names:
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
        for folder in ("/usr/bin", "/usr/local/bin"):
            path = os.path.join(folder, name)
            if os.access(path, os.X_OK):
                found.append(path)
    return list(dict.fromkeys(found))


def python_loop_s(steps: int, repeats: int = 3) -> float:
    """Seconds this interpreter takes for ``steps`` additions in a Python loop, the best of ``repeats``.

    Most of clickcash's CPU is Python bytecode, so this loop ranks interpreters here, and
    ``clickcash compare`` prints its time in a report's first line so that runs on different days,
    machines or interpreters can be told apart."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = 0
        for i in range(steps):
            total += i
        best = min(best, time.perf_counter() - t0)
    return best


def _print_probe() -> None:
    """Run under a candidate (``<candidate> pick_python.py --probe``): print its own path (links resolved,
    so one build is timed once), its version and :func:`python_loop_s`. Fails, and the candidate is
    skipped, when it cannot create a virtualenv (Debian ships ``venv``'s ``ensurepip`` apart)."""
    import ensurepip  # noqa: F401
    import venv  # noqa: F401

    v = sys.version_info
    print(
        os.path.realpath(sys.executable),
        f"{v[0]}.{v[1]}",
        f"{v[0]}.{v[1]}.{v[2]}",
        python_loop_s(PROBE_STEPS),
    )


Probe = tuple[str, str, str, float]
"""(interpreter path, major.minor, full version, seconds of the best loop)"""


def choose(default: Probe, others: list[Probe]) -> Probe:
    """The fastest of ``others`` of ``default``'s major.minor, if it beats ``default`` by more than
    :data:`KEEP_DEFAULT_WITHIN`; otherwise ``default``."""
    same = [m for m in others if m[1] == default[1]]
    best = min(same, key=lambda m: m[3], default=default)
    return best if best[3] * KEEP_DEFAULT_WITHIN <= default[3] else default


def _probe(path: str) -> Probe | None:
    try:
        out = subprocess.run(
            [path, __file__, "--probe"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 4:
        return None
    return out[0], out[1], out[2], float(out[3])


def main() -> int:
    if sys.argv[1:] == ["--probe"]:
        _print_probe()
        return 0
    default = shutil.which("python3")
    base = _probe(default) if default else None
    if base is None:
        print("python3")
        return 0
    measured = {base[0]: base}
    for path in _candidates():
        found = _probe(path) if path != default else None
        if found is not None:
            measured.setdefault(found[0], found)
    best = choose(base, list(measured.values()))
    others = ", ".join(f"{m[0]} ({m[2]}) {m[3] * 1000:.0f} ms" for m in measured.values() if m is not best)
    print(
        f"python: {best[0]} ({best[2]}), {best[3] * 1000:.0f} ms for 1,000,000 additions"
        + (f"; also found {others}" if others else ""),
        file=sys.stderr,
    )
    print(best[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
