"""Instructions per event on the shard's batch path: ``clickcash bench --stages --instructions``.

CPU time on a shared machine moves by tens of per cent from one run to the next (other tenants, frequency
changes), so a change worth a few per cent cannot be seen in it. The number of instructions a process
executes does not depend on who else runs: it is counted here with valgrind's cachegrind tool
(``--cache-sim=no``: count only, no cache model), which runs the interpreter ~50x slower but counts every
instruction of it and its C extensions (pydantic-core, orjson, hashlib).

Two child processes run :meth:`clickcash.actors.shard.Shard.apply` against the in-memory store over the
same generated batches (the project's campaign generator): one applies the warm-up only, the other the
warm-up and then the measured events. Everything both do alike (interpreter start, imports, generating
the events, the warm-up) cancels in the difference, which divided by the measured events is the batch
path's cost per event. ``PYTHONHASHSEED`` is fixed, so set and dict layouts repeat, and nothing on the path
depends on the wall clock: two counts of the same code agree to within a few hundred instructions per event.

What a count misses: memory traffic (copying a large buffer costs more time than its instructions say) and
everything outside the process (Redis, Kafka, Ray's transport). It ranks changes to the shard's Python,
which is where most of clickcash's CPU goes; the time figures stay with ``--stages`` and ``compare``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickcash.errors import ConfigError, ServiceError

HASH_SEED = "0"
"""the children's ``PYTHONHASHSEED``: str hashes decide set and dict layouts, and with them some counts"""

DEFAULT_EVENTS = 5_000
"""measured events when ``--instructions`` names no number: ~2-3 minutes of valgrind on two cores"""

TIMEOUT_S = 3_600.0
"""a count that has not finished in an hour is stuck (valgrind runs ~50x slower, not 1,000x)"""

_I_REFS = re.compile(rb"I\s+refs:\s+([\d,]+)")


@dataclass(frozen=True)
class InstructionCount:
    """The two children's totals and what their difference says per event."""

    warmup_events: int
    measured_events: int
    warmup_only: int
    """instructions of the child that applied the warm-up only"""
    with_measured: int
    """instructions of the child that applied the warm-up and then the measured events"""

    @property
    def per_event(self) -> float:
        return (self.with_measured - self.warmup_only) / max(self.measured_events, 1)

    def render(self, *, batch_size: int, customers: int) -> str:
        rows = [
            (f"warm-up alone ({self.warmup_events:,} events)", f"{self.warmup_only:,}"),
            (f"warm-up + {self.measured_events:,} measured events", f"{self.with_measured:,}"),
            ("instructions per measured event", f"{self.per_event:,.0f}"),
        ]
        return "\n".join(
            [
                f"shard batch path under valgrind (cachegrind, instructions executed): in-memory store, "
                f"{customers:,} customers, {batch_size}-event batches, PYTHONHASHSEED={HASH_SEED}",
                *(f"  {label:<45} {value:>16}" for label, value in rows),
            ]
        )


def instructions_executed(valgrind_stderr: bytes) -> int:
    """The ``I refs`` total of a cachegrind run's summary (the process's instructions executed)."""
    match = _I_REFS.search(valgrind_stderr)
    if match is None:
        tail = valgrind_stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ServiceError(
            "valgrind", "printed no instruction total ('I refs'); its last lines: " + " | ".join(tail)
        )
    return int(match.group(1).replace(b",", b""))


def child_command(
    valgrind: str, *, apply_events: int, warmup: int, events: int, batch_size: int, customers: int, seed: int
) -> list[str]:
    """One child: this module's ``main`` under cachegrind, generating ``warmup + events`` events and
    applying the first ``apply_events`` of them after the warm-up."""
    return [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        __name__,
        f"--warmup={warmup}",
        f"--events={events}",
        f"--apply={apply_events}",
        f"--batch={batch_size}",
        f"--customers={customers}",
        f"--seed={seed}",
    ]


def count_instructions(
    *,
    warmup: int,
    events: int,
    batch_size: int,
    customers: int,
    seed: int,
    progress: Callable[[str], None] = print,
    poll_s: float = 30.0,
) -> InstructionCount:
    """Run the two children side by side and return their counts (each child takes one core)."""
    if events < batch_size or warmup < batch_size:
        raise ConfigError(
            f"the counted events ({events:,}, --instructions) and the warm-up ({warmup:,}, --warmup) must "
            f"each be at least one batch (--batch {batch_size})"
        )
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ConfigError(
            "--instructions needs valgrind on PATH (Debian: apt-get install valgrind; `make system-deps` "
            "installs it)"
        )
    measured = events // batch_size * batch_size
    warmup = warmup // batch_size * batch_size
    env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
    common = {
        "warmup": warmup,
        "events": measured,
        "batch_size": batch_size,
        "customers": customers,
        "seed": seed,
    }
    with tempfile.TemporaryDirectory(prefix="clickcash-instructions-") as work:
        logs = [Path(work) / "warmup.err", Path(work) / "measured.err"]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for apply_events, log_path in zip((0, measured), logs, strict=True):
                with log_path.open("wb") as err:
                    cmd = child_command(valgrind, apply_events=apply_events, **common)
                    procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env))
            started = time.monotonic()
            next_report = started + poll_s
            while any(p.poll() is None for p in procs):
                now_s = time.monotonic()
                if now_s - started > TIMEOUT_S:
                    raise ServiceError("valgrind", f"the runs took more than {TIMEOUT_S:.0f} s; stopped them")
                if now_s >= next_report:
                    progress(f"  counting ... {now_s - started:.0f} s")
                    next_report += poll_s
                time.sleep(0.5)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        outputs = [path.read_bytes() for path in logs]
    for p, out in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            tail = out.decode(errors="replace").strip().splitlines()[-5:]
            raise ServiceError("valgrind", f"a run exited with {p.returncode}: " + " | ".join(tail))
    warmup_only, with_measured = (instructions_executed(out) for out in outputs)
    return InstructionCount(warmup, measured, warmup_only, with_measured)


def run_instruction_count(args: argparse.Namespace) -> int:
    """``clickcash bench --stages --instructions [EVENTS]``."""
    print(
        f"counting instructions: two runs under valgrind side by side (warm-up {args.warmup:,} events, "
        f"then {args.instructions:,} measured) ..."
    )
    count = count_instructions(
        warmup=args.warmup,
        events=args.instructions,
        batch_size=args.batch,
        customers=args.customers,
        seed=args.seed,
    )
    print(count.render(batch_size=args.batch, customers=args.customers))
    return 0


def main(argv: list[str] | None = None) -> int:
    """A child: apply the warm-up, then ``--apply`` of the ``--events`` events that follow it."""
    import logging

    import clickcash.actors.shard as shard_mod
    from clickcash.actors.shard import tune_collector
    from clickcash.actors.state.base import InMemoryStateStore
    from clickcash.loadtest.contenders.stages import bench_batches, bench_shard

    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    for name in ("warmup", "events", "apply", "batch", "customers", "seed"):
        parser.add_argument(f"--{name}", type=int, required=True)
    args = parser.parse_args(argv)
    # the generator's malformed records are dead-lettered on purpose: their warnings are noise here
    logging.getLogger(shard_mod.__name__).setLevel(logging.ERROR)
    shard = bench_shard(InMemoryStateStore())
    # both children generate the same events, so generating them cancels in the difference
    batches = bench_batches(args.warmup + args.events, args.batch, args.customers, args.seed, 0)
    split = args.warmup // args.batch
    tune_collector()  # as the shard actor does
    for batch in batches[: split + args.apply // args.batch]:
        shard.apply(batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
