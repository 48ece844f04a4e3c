"""``clickcash loadtest --preflight`` against a running pipeline on the test stack: GO when every SLO holds,
NO-GO (exit 1, the deciding figure printed) when the latency SLO is set impossibly tight.

The test is about the go/no-go wiring, not this machine's speed: the GO run's latency and freshness limits
are minutes (a shared, loaded test machine measured a 7 s p99 at 30 events/s), so it still fails when no
output comes back, a record is dead-lettered or a customer is parked, but not because the machine is slow.
"""

from __future__ import annotations

import argparse

import pytest

from clickcash.loadtest.locust_run.cli import _preflight, add_loadtest_parser
from tests.integration._harness import SettingsFactory, running_app


def _args(extra: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_loadtest_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["loadtest", "--preflight", *extra])


MACHINE_PROOF_SLOS = ["--slo-p99-latency-ms=300000", "--slo-freshness-s=300"]
"""latency and freshness limits any machine that finishes the run within its drain timeout meets"""


def test_preflight_is_go_when_the_slos_hold_and_no_go_when_a_threshold_is_impossible(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(partitions=2, pipeline={"shards": 2})
    with running_app(settings):
        go = _preflight(
            _args(
                [
                    "--campaign-peak=30",
                    "--preflight-seconds=5",
                    "--drain-timeout=120",
                    *MACHINE_PROOF_SLOS,
                ]
            ),
            settings,
        )
        first = capsys.readouterr().out
        no_go = _preflight(
            _args(
                [
                    "--campaign-peak=30",
                    "--preflight-seconds=3",
                    "--drain-timeout=120",
                    "--slo-p99-latency-ms=0.001",
                ]
            ),
            settings,
        )
        second = capsys.readouterr().out
    assert go == 0, first
    assert first.rstrip().splitlines()[-1] == "GO"
    assert "GO     end-to-end latency: p99" in first
    assert "GO     parked customers: 0 parked by the spike" in first
    assert no_go == 1, second
    assert second.rstrip().splitlines()[-1] == "NO-GO"
    assert "NO-GO  end-to-end latency: p99" in second and "SLO p99 <= 0.0 ms" in second
    assert "GO     dead-letter rate" in second
