"""The app log's summary: JSON records counted by level, warnings by message kind, other lines skipped."""

from __future__ import annotations

from pathlib import Path

import orjson

from clickcash.cluster.observability.app_logs import message_kind, summarise


def _rec(level: str, msg: str) -> str:
    return orjson.dumps({"ts": "2026-01-01T00:00:00Z", "level": level, "logger": "x", "msg": msg}).decode()


def test_message_kind_drops_the_variable_part() -> None:
    assert message_kind("dead letter: not_utf8") == "dead letter"
    assert message_kind("61 dead-letter log lines suppressed (more than 20 in 10 s)") == (
        "dead-letter log lines suppressed (more than in s)"
    )
    assert message_kind("GETPID [thrd:main]: Failed to acquire idempotence PID", "librdkafka") == (
        "librdkafka GETPID"
    )


def test_summarise_counts_records_and_groups_warnings() -> None:
    lines = [
        _rec("WARNING", "dead letter: not_utf8"),
        _rec("WARNING", "dead letter: malformed_json"),
        _rec("ERROR", "shard 3 failed: boom"),
        _rec("INFO", "started"),
        "(raylet) some Ray line",
        "{not json",
        '{"no": "level"}',
    ]
    s = summarise(lines)
    assert s.lines == 4
    assert s.by_level == {"WARNING": 2, "ERROR": 1, "INFO": 1}
    assert s.warnings == {"dead letter": 2, "shard failed": 1}
    text = s.render(Path("/tmp/app.log"))
    assert "/tmp/app.log" in text and "3 warnings or errors" in text and "dead letter x2" in text
    assert "\n" not in text
