"""The arithmetic of ``clickcash compare``: completeness verdicts, ratios, targets, profile stages."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickcash.loadtest.contenders._common import ContenderResult, EndTracker
from clickcash.loadtest.contenders.results import (
    InputManifest,
    OutputTally,
    bound_statement,
    cause_of,
    check_full,
    check_passthrough,
    cpu_by_process_table,
    cpu_split,
    latency_cell,
    latency_summary,
    memory_growth_pct,
    output_id_of,
    ratios,
    render_markdown,
    same_outputs,
    stage_seconds,
    targets,
)


def manifest(orders: int = 3, malformed: int = 1) -> InputManifest:
    return InputManifest(
        events=orders + malformed,
        end_offsets={0: orders + malformed},
        by_kind={"order.placed": orders, "malformed": malformed},
        order_event_ids={f"e{i}" for i in range(orders)},
        malformed=malformed,
    )


def complete_tally(orders: int = 3, malformed: int = 1) -> OutputTally:
    tally = OutputTally()
    for i in range(orders):
        tally.add(f"dec-{i}", "order.accepted", f"e{i}")
        tally.add(f"route-{i}", "payment.route_decided", f"e{i}")
    for i in range(malformed):
        tally.add(f"dl-{i}", "clickcash.dead_letter", None)
    return tally


def test_complete_outputs_pass() -> None:
    verdict = check_full(manifest(), complete_tally())
    assert verdict.ok, verdict.problems
    assert verdict.figures["orders_decided"] == 3
    assert verdict.figures["outputs_by_type"]["payment.route_decided"] == 3


def test_an_order_without_a_decision_fails() -> None:
    tally = complete_tally(orders=2)
    verdict = check_full(manifest(orders=3), tally)
    assert not verdict.ok
    assert verdict.problems == ["1 orders without a decision"]


def test_an_order_decided_twice_and_a_duplicate_id_fail() -> None:
    tally = complete_tally()
    tally.add("dec-0", "order.accepted", "e0")
    verdict = check_full(manifest(), tally)
    assert "1 orders decided more than once" in verdict.problems
    assert "1 duplicate output ids" in verdict.problems


def test_a_missing_dead_letter_and_a_stray_decision_fail() -> None:
    tally = complete_tally(malformed=0)
    tally.add("dec-x", "order.rejected", "not-an-input")
    verdict = check_full(manifest(), tally)
    assert "0 dead letters for 1 malformed records" in verdict.problems
    assert "1 decisions for orders not in the input" in verdict.problems


def test_outputs_of_the_apps_own_timer_commands_are_not_counted() -> None:
    tally = complete_tally()
    tally.add("step-1", "dunning.step_due", "timer:plan:0")
    verdict = check_full(manifest(), tally)
    assert verdict.ok
    assert verdict.figures["timer_outputs_ignored"] == 1
    assert verdict.figures["outputs"] == 7


def test_passthrough_needs_one_distinct_output_per_input_record() -> None:
    m = manifest()
    tally = OutputTally()
    for o in range(m.events):
        tally.add(f"0:{o}", "passthrough", None)
    assert check_passthrough(m, tally).ok
    tally.add("0:0", "passthrough", None)
    assert check_passthrough(m, tally).problems == ["1 duplicate output ids (at-least-once re-sends)"]
    short = OutputTally()
    short.add("0:0", "passthrough", None)
    assert not check_passthrough(m, short).ok


def test_the_id_digest_ignores_order_and_tells_different_sets_apart() -> None:
    a, b, c = OutputTally(), OutputTally(), OutputTally()
    for i in ("x", "y", "z"):
        a.add(i, "t", None)
    for i in ("z", "x", "y"):
        b.add(i, "t", None)
    for i in ("x", "y"):
        c.add(i, "t", None)
    assert a.id_digest == b.id_digest != c.id_digest
    full = {"a": check_full(manifest(), complete_tally()), "b": check_full(manifest(), complete_tally())}
    assert same_outputs(full) is True
    assert same_outputs({"a": full["a"]}) is None


def test_ratios_are_clickcash_over_each_other_contender() -> None:
    r = ratios({"passthrough": 20_000.0, "handrolled": 1_000.0, "clickcash": 8_000.0})
    assert r == {"clickcash/passthrough": 0.4, "clickcash/handrolled": 8.0}
    assert ratios({"passthrough": 1.0}) == {}


def test_targets_say_met_missed_or_not_run() -> None:
    rates = {"passthrough": 20_000.0, "handrolled": 3_000.0, "clickcash": 6_000.0}
    by_name = {t.name: t for t in targets(rates, p99_ms=250.0, memory_growth=1.0)}
    assert by_name["clickcash / passthrough"].met is False  # 0.3x < 0.5x
    assert by_name["clickcash / handrolled"].met is False  # 2x < 3x
    assert by_name["clickcash / quix"].met is None
    assert by_name["p99 latency at 50% of peak"].met is False
    assert by_name["memory flat at 70% of peak"].met is True
    assert by_name["p99 latency at 200 events/s"].met is None
    light = {"rate_per_s": 200.0, "latency_ms": {"p50": 35.0, "p99": 80.0, "max": 120.0}}
    by_name = {t.name: t for t in targets(rates, p99_ms=90.0, memory_growth=None, light=light)}
    assert by_name["p99 latency at 50% of peak"].met is True
    assert (by_name["p99 latency at 200 events/s"].met, by_name["p50 latency at 200 events/s"].met) == (
        True,
        False,
    )
    assert by_name["p50 latency at 200 events/s"].value == "35 ms"


def test_latency_is_send_to_seen_for_the_outputs_that_answer_a_sent_event() -> None:
    sent = {f"e{i}": 100.0 + i for i in range(100)}
    seen: list[tuple[str | None, str, float]] = [
        (f"e{i}", "order.accepted", 100.0 + i + (i + 1) / 1000) for i in range(100)
    ]
    seen += [(None, "clickcash.dead_letter", 500.0), ("warm-up", "order.accepted", 999.0)]
    summary = latency_summary(sent, seen)
    assert summary["outputs_seen"] == 100
    assert summary["latency_ms"] == {"p50": 50.5, "p99": 99.0, "max": 100.0}
    assert latency_summary(sent, []) == {"outputs_seen": 0, "latency_ms": {}}
    assert latency_cell({"rate_per_s": 4321.0, **summary}) == "50 / 99 @ 4,321/s"
    assert latency_cell(None) == "-"


def test_an_output_is_matched_to_its_input_by_header_field_or_its_own_id() -> None:
    assert cause_of({"ce_causationid": b"e1", "ce_type": b"clickcash.dead_letter"}, b"x") == (
        "e1",
        "clickcash.dead_letter",
    )
    decision = b'{"id": "o9", "type": "order.accepted", "causationid": "e2"}'
    assert cause_of({}, decision) == ("e2", "order.accepted")
    echoed = b'{"id": "e3", "type": "order.placed"}'  # the passthrough writes its input back
    assert cause_of({"ce_id": b"0:7"}, echoed) == ("e3", "order.placed")
    assert cause_of({}, b"not json") == (None, "")
    assert cause_of({}, b"[1]") == (None, "")
    # an output's own id, to count one seen twice: the dead letter's header, else the envelope's id
    assert output_id_of({"ce_id": b"dl-1", "ce_causationid": b"e1"}, b"x") == "dl-1"
    assert output_id_of({}, decision) == "o9"
    assert output_id_of({}, b"not json") == "" and output_id_of({}, b"[1]") == ""


def test_memory_growth_skips_the_warm_up_and_compares_halves() -> None:
    flat = [(float(t), 500.0 if t else 300.0) for t in range(20)]
    assert memory_growth_pct(flat) == 0.0
    growing = [(float(t), 500.0 + 10 * t) for t in range(20)]
    growth = memory_growth_pct(growing)
    assert growth is not None and growth > 5
    assert memory_growth_pct([(0.0, 1.0), (1.0, 2.0)]) is None


@dataclass
class Frame:
    function: str
    file_path: str | None
    time: float
    children: list[Frame] = field(default_factory=list)


def test_profile_time_goes_to_the_innermost_stage() -> None:
    redis = Frame("commit", "/repo/actors/state/redis.py", 0.3)
    decode = Frame("decode_record", "/repo/actors/_decode.py", 0.2)
    shard = Frame("apply", "/repo/actors/shard.py", 1.0, [decode, redis])
    dispatch = Frame("_dispatch", "/repo/router/_router.py", 1.2, [shard])
    step = Frame("_step", "/repo/router/_router.py", 1.5, [dispatch])
    root = Frame("<module>", "x.py", 1.6, [step])
    stages = stage_seconds(root)
    assert stages["shard: Redis load + commit (round trips)"] == 0.3
    assert stages["shard: decode + validate"] == 0.2
    assert round(stages["shard: idempotency + first responses"], 6) == 0.5
    assert round(stages["router: records + split by shard"], 6) == 0.2
    assert round(stages["router: consume + loop"], 6) == 0.3
    assert round(stages["other"], 6) == 0.1
    assert round(sum(stages.values()), 6) == 1.6


def test_end_tracker_closes_partitions_at_their_pre_produced_end() -> None:
    tracker = EndTracker({0: 2, 1: 1, 2: 0})
    assert tracker.in_scope(0, 1) and not tracker.in_scope(0, 2) and not tracker.in_scope(2, 0)
    tracker.seen(0, 1)
    assert not tracker.done
    tracker.seen(1, 0)
    assert tracker.done


def test_cpu_split_and_bound_statement() -> None:
    cpu = {"router": 30.0, "shard": 200.0, "kafka-0 (service)": 60.0, "redis (service)": 20.0}
    assert cpu_split(cpu) == (230.0, 60.0, 20.0)
    # 310 µs/event at 6,000 events/s = 1.86 CPU-s per s on 2 cores: 93 % busy, CPU-bound
    assert bound_statement(cpu, 6_000, 2).startswith("CPU: the machine's 2 cores were 93% busy over the run.")
    assert "one core carries at most 3,226 events/s, 2 cores 6,452" in bound_statement(cpu, 6_000, 2)
    assert bound_statement(cpu, 1_000, 2).startswith("not CPU alone")
    # other work on the machine counts: the cores were busy even though this run used a sixth of them
    assert "(16% by this run's processes)" in bound_statement(cpu, 1_000, 2, machine_busy_share=0.97)


def test_the_markdown_table_holds_every_contender_and_target() -> None:
    result = ContenderResult("clickcash", 1000, 0.0, 0.5, extra={"guarantee": "exactly-once"})
    entry = {
        **result.to_json(),
        "completeness": {"ok": True, "problems": []},
        "cpu_us_per_event": {"router": 10.0, "shard": 30.0, "kafka-0 (service)": 7.0, "redis (service)": 3.0},
        "latency": {
            "at_50pct": {"rate_per_s": 1000.0, "latency_ms": {"p50": 21.0, "p99": 64.0, "max": 80.0}},
            "at_light": {"rate_per_s": 200.0, "latency_ms": {"p50": 14.0, "p99": 30.4, "max": 41.0}},
        },
    }
    slow = {
        **ContenderResult("handrolled", 1000, 0.0, 2.0, extra={}).to_json(),
        "completeness": {"ok": False, "problems": ["1 orders without a decision"]},
    }
    report = {
        "run": {
            "started": "2026-12-03T12:00:00+00:00",
            "events": 1000,
            "partitions": 8,
            "customers": 10,
            "machine": {"cores": 2, "model": "AMD EPYC"},
        },
        "contenders": {"clickcash": entry, "handrolled": slow},
        "targets": [t.__dict__ for t in targets({"clickcash": 2000.0, "handrolled": 500.0}, None, None)],
    }
    md = render_markdown(report)
    assert (
        "| clickcash | 2,000 | - | 40 | 7 | 3 | 21 / 64 @ 1,000/s | 14 / 30 @ 200/s | yes | exactly-once |"
        in md
    )
    assert "| handrolled | 500 | 4.00x | 0 | 0 | 0 | - | - | NO: 1 orders without a decision |" in md
    assert "| clickcash / handrolled | >= 3x | 4.00x | yes |" in md
    assert "| p99 latency at 50% of peak | <= 100 ms | not run | - |" in md


def test_the_header_names_the_interpreter_and_its_loop_time_when_the_report_has_them() -> None:
    def header(machine: dict[str, object]) -> str:
        run = {"started": "x", "events": 1, "partitions": 8, "customers": 10, "machine": machine}
        return render_markdown({"run": run, "contenders": {}, "targets": []}).splitlines()[2]

    timed = header({"cores": 2, "model": "AMD EPYC", "python": "3.11.7", "python_loop_s": 0.214})
    assert timed.endswith(
        "machine: 2 cores, AMD EPYC; CPython 3.11.7, 2,000,000 additions in a Python loop in 214 ms."
    )
    # reports written before the calibration existed still render
    assert header({"cores": 2, "model": "AMD EPYC"}).endswith("machine: 2 cores, AMD EPYC.")


def test_the_soak_line_gives_its_length_and_rss_path() -> None:
    samples = [(float(t), 500.0 + (t % 3)) for t in range(600)]
    report = {
        "run": {
            "started": "x",
            "events": 1,
            "partitions": 8,
            "customers": 10,
            "machine": {"cores": 2, "model": "AMD EPYC"},
        },
        "contenders": {},
        "targets": [],
        "memory_at_70pct": {
            "rate_per_s": 2000.0,
            "events": 1_200_000,
            "rss_samples_mb": samples,
            "rss_growth_pct": memory_growth_pct(samples),
        },
    }
    md = render_markdown(report)
    assert "Memory at 70% of peak (2,000 events/s offered for 600 s" in md
    assert "500 MiB at the start, 502 MiB at most, 502 MiB at the end; +0.0% between the halves" in md


def test_the_campaign_ledger_has_its_own_row_and_its_whole_cost_per_input_event() -> None:
    from clickcash.loadtest.contenders.compare import ledger_cost

    ledger = ledger_cost(
        {"cpu_s": 2.27, "records_read": 162_509, "trailed_s": 1.5, "transactions": 13, "snapshots": 13},
        100_000,
    )
    assert ledger is not None and ledger["cpu_us_per_event"] == 22.7
    assert ledger_cost(None, 100_000) is None
    report = {
        "run": {
            "started": "x",
            "events": 1,
            "partitions": 8,
            "customers": 10,
            "machine": {"cores": 2, "model": "m"},
        },
        "contenders": {},
        "targets": [],
        "cpu_us_per_event": {"router": 28.1, "shard": 112.4, "ledger": 21.3},
        "ledger": ledger,
    }
    md = render_markdown(report)
    assert "| ledger | 21.3 |" in md
    assert "read all 162,509 records" in md and "22.7 µs of CPU per input event, in 13 transactions" in md


def test_cpu_by_process_sets_paced_runs_beside_the_throughput_run() -> None:
    at_50pct = {
        "rate_per_s": 4773.0,
        "cpu_us_per_event": {"router": 30.0, "shard": 150.0},
        "events_per_shard_call": 48.0,
    }
    at_light = {
        "rate_per_s": 200.0,
        "cpu_us_per_event": {"router": 300.0, "shard": 900.0},
        "events_per_shard_call": 2.5,
    }
    rows = cpu_by_process_table(
        {"router": 19.2, "shard": 108.7}, at_50pct, at_light, flat_out_events_per_call=520.4
    )
    assert "| clickcash CPU µs per event by process | throughput run | at 4,773/s | at 200/s |" in rows
    assert "| shard | 108.7 | 150.0 | 900.0 |" in rows
    assert "| total | 127.9 | 180.0 | 1,200.0 |" in rows
    assert "| events per shard call | 520 | 48 | 2 |" in rows
    # a paced run without the figures (a report from before they were kept) adds no column
    only = cpu_by_process_table({"router": 19.2}, {"rate_per_s": 4773.0}, {})
    assert "| clickcash CPU µs per event by process | throughput run |" in only
    assert "| router | 19.2 |" in only and not any("events per shard call" in r for r in only)
