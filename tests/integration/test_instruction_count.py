"""``clickcash bench --stages --instructions`` under a real valgrind: a count, and the same count again.

A figure for telling a change of a few per cent from noise must be one that repeats: two counts of the same
code are compared here, each the difference of two real valgrind runs of the shard's batch path.
"""

from __future__ import annotations

import re
import subprocess
import sys

from clickcash.loadtest.contenders.instructions import count_instructions

SMALL = {"warmup": 400, "events": 400, "batch_size": 100, "customers": 40, "seed": 3}


def test_the_count_repeats_and_the_command_prints_it() -> None:
    first = count_instructions(**SMALL, progress=lambda _m: None)
    assert first.measured_events == 400
    assert first.with_measured > first.warmup_only
    # the shard's batch path costs some hundreds of thousands of instructions per event (~375,000 at 10,000
    # customers); far outside this range, the difference is not measuring the batch path
    assert 50_000 < first.per_event < 5_000_000

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "clickcash.cli",
            "bench",
            "--stages",
            "--instructions",
            "400",
            "--warmup",
            "400",
            "--batch",
            "100",
            "--customers",
            "40",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    match = re.search(r"instructions per measured event\s+([\d,]+)", out)
    assert match, out
    second = int(match.group(1).replace(",", ""))
    assert abs(second - first.per_event) / first.per_event < 0.01, (first.per_event, second)
