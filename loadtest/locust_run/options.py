"""The load test's options, shared by ``clickcash loadtest`` and the locustfile's custom Locust arguments.

One table, so the same names work on both command lines, in a ``--config`` TOML file of
``clickcash loadtest`` (keys = option names with ``_``) and in Locust's own config files.
"""

from __future__ import annotations

import argparse
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickcash.loadtest.traffic.campaign import MIX_NAMES, CampaignMix, loadtest_mix
from clickcash.loadtest.traffic.shapes import SHAPES, ShapeParams


@dataclass(frozen=True)
class Option:
    flag: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


_P = ShapeParams()
_M = loadtest_mix()

SHAPE_OPTIONS: tuple[Option, ...] = (
    Option("--shape", str, _P.shape, "load shape", SHAPES),
    Option("--rate", float, _P.rate, "events/s: the spike's baseline, the steady rate, the first step"),
    Option("--peak-x", float, _P.peak_x, "spike: peak = rate x this"),
    Option("--baseline-s", float, _P.baseline_s, "spike: seconds at the baseline before the ramp"),
    Option("--ramp-s", float, _P.ramp_s, "spike: seconds from baseline to peak"),
    Option("--hold-s", float, _P.hold_s, "spike: seconds at the peak"),
    Option("--decay-s", float, _P.decay_s, "spike: seconds from peak back to baseline"),
    Option("--recovery-s", float, _P.recovery_s, "spike: seconds at the baseline after the decay"),
    Option("--steady-s", float, _P.duration_s, "steady: seconds"),
    Option("--step-rate", float, 0.0, "step: events/s added per step (0: --rate)"),
    Option("--step-s", float, _P.step_s, "step: seconds per step"),
    Option("--steps", int, _P.steps, "step: number of steps"),
    Option(
        "--user-rate", float, 0.0, "events/s per Locust user (0: rate/20, so the first phase runs 20 users)"
    ),
)

TRAFFIC_OPTIONS: tuple[Option, ...] = (
    Option(
        "--mix",
        str,
        "campaign",
        "shoppers' behaviour: campaign (most orders accepted) or abuse (hot customers buy without end, "
        "most orders rejected)",
        MIX_NAMES,
    ),
    Option("--customers", int, _M.customers, "customer population (Zipf-skewed: few hot, most cold)"),
    Option("--zipf-s", float, _M.zipf_s, "Zipf exponent of customer activity"),
    Option("--duplicate-rate", float, _M.duplicate_rate, "share of re-sent duplicates"),
    Option("--malformed-rate", float, _M.malformed_rate, "share of malformed records"),
    Option(
        "--method-update-rate", float, _M.method_update_rate, "share of declines followed by a card update"
    ),
    Option("--recovery-rate", float, _M.recovery_rate, "share of card updates followed by an authorization"),
    Option("--seed", int, 7, "random seed (each process derives its own)"),
    Option("--closed-loop", bool, False, "orders only: payment outcomes come from the simulated PSPs"),
)

RUN_OPTIONS: tuple[Option, ...] = (
    Option("--run-id", str, "", "prefix of this run's customer and event ids (default: generated)"),
    Option("--run-info", str, "", "file the shape writes its start and end time to (JSON)"),
    Option("--kafka-bootstrap", str, "", "Kafka bootstrap servers (default: settings)"),
    Option("--input-topic", str, "", "input topic (default: settings)"),
)

ALL_OPTIONS = SHAPE_OPTIONS + TRAFFIC_OPTIONS + RUN_OPTIONS


GIVEN = "_given"
"""namespace attribute: the options given on the command line (they win over ``--config``)"""


class _Given(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
        given = set(getattr(namespace, GIVEN, None) or ())
        setattr(namespace, GIVEN, given | {self.dest})


def add_options(parser: Any, options: tuple[Option, ...], *, locust: bool = False) -> None:
    """Register ``options`` on an argparse parser (recording which were given) or on Locust's parser."""
    for o in options:
        if locust:
            extra: dict[str, Any] = {"include_in_web_ui": o.flag != "--run-info"}
            if o.type is bool:
                parser.add_argument(o.flag, action="store_true", default=o.default, help=o.help, **extra)
            else:
                parser.add_argument(
                    o.flag, type=o.type, default=o.default, help=o.help, choices=o.choices, **extra
                )
        elif o.type is bool:
            parser.add_argument(o.flag, action=_Given, nargs=0, default=o.default, help=o.help)
        else:
            parser.add_argument(
                o.flag, action=_Given, type=o.type, default=o.default, help=o.help, choices=o.choices
            )


def apply_config(ns: Any, path: Path, options: tuple[Option, ...] = ()) -> None:
    """Set ``ns``'s options from a TOML file (top level or ``[loadtest]``), except those given on the
    command line."""
    options = options or ALL_OPTIONS
    raw = tomllib.loads(path.read_text())
    table = raw.get("loadtest", raw)
    by_dest = {o.dest: o for o in options}
    values = {key.replace("-", "_"): v for key, v in table.items()}
    unknown = sorted(k for k in values if k not in by_dest)
    if unknown:
        raise ValueError(
            f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(by_dest))}"
        )
    given = set(getattr(ns, GIVEN, None) or ())
    for dest, value in values.items():
        o = by_dest[dest]
        if o.choices is not None and value not in o.choices:
            raise ValueError(f"{path}: {dest} must be one of {', '.join(map(str, o.choices))}")
        if dest not in given:
            setattr(ns, dest, o.type(value))


def new_run_id() -> str:
    return f"lt{uuid.uuid4().hex[:8]}"


def shape_params(ns: Any) -> ShapeParams:
    return ShapeParams(
        shape=ns.shape,
        rate=float(ns.rate),
        peak_x=float(ns.peak_x),
        baseline_s=float(ns.baseline_s),
        ramp_s=float(ns.ramp_s),
        hold_s=float(ns.hold_s),
        decay_s=float(ns.decay_s),
        recovery_s=float(ns.recovery_s),
        duration_s=float(ns.steady_s),
        step_rate=float(ns.step_rate) or None,
        step_s=float(ns.step_s),
        steps=int(ns.steps),
    )


def campaign_mix(ns: Any) -> CampaignMix:
    return loadtest_mix(
        str(ns.mix),
        customers=int(ns.customers),
        zipf_s=float(ns.zipf_s),
        duplicate_rate=float(ns.duplicate_rate),
        malformed_rate=float(ns.malformed_rate),
        method_update_rate=float(ns.method_update_rate),
        recovery_rate=float(ns.recovery_rate),
        payment_outcomes=not bool(ns.closed_loop),
    )


def forward_args(ns: Any, options: tuple[Option, ...]) -> list[str]:
    """``ns``'s values of ``options`` as command-line arguments (for the locust command)."""
    out: list[str] = []
    for o in options:
        value = getattr(ns, o.dest)
        if o.type is bool:
            if value:
                out.append(o.flag)
        elif value not in ("", None):
            out += [o.flag, str(value)]
    return out
