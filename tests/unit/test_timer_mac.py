"""Timer commands are signed by the router and verified by the shard: the pure MAC logic and its wiring
(settings, the timer pump, ``clickcash run`` against a cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.cli import main
from clickcash.config.settings import load_settings
from clickcash.errors import ConfigError
from clickcash.router._timers import DueTimer, TimerPump
from clickcash.timer_mac import LOCAL_STACK_TIMER_KEY, TimerMac

FIELDS: dict[str, Any] = {
    "event_id": "timer:plan-1:2",
    "customer_id": "c-1",
    "order_id": "o-1",
    "plan_id": "plan-1",
    "step_index": 2,
    "due_ms": 1_765_000_000_000,
}
KEY_A = b"key A of at least sixteen bytes"
KEY_B = b"key B of at least sixteen bytes"


def test_a_mac_verifies_with_the_key_that_signed_it_and_with_nothing_else() -> None:
    mac = TimerMac([KEY_A]).sign(**FIELDS)
    assert len(mac) == 64 and int(mac, 16) >= 0
    assert TimerMac([KEY_A]).verify(mac, **FIELDS)
    assert TimerMac([KEY_B, KEY_A]).verify(mac, **FIELDS), "every listed key verifies (rotation)"
    assert not TimerMac([KEY_B]).verify(mac, **FIELDS)
    assert not TimerMac([KEY_A]).verify(None, **FIELDS)
    assert not TimerMac([KEY_A]).verify(mac[:-1], **FIELDS)
    assert not TimerMac([KEY_A]).verify(mac.upper(), **FIELDS)
    assert TimerMac([KEY_B, KEY_A]).sign(**FIELDS) == TimerMac([KEY_B]).sign(**FIELDS), "the first key signs"


@given(
    field=st.sampled_from(sorted(FIELDS)),
    text=st.text(min_size=1, max_size=20),
    number=st.integers(min_value=0, max_value=2**53),
)
def test_changing_any_signed_field_breaks_the_mac(field: str, text: str, number: int) -> None:
    mac = TimerMac([KEY_A]).sign(**FIELDS)
    changed = {**FIELDS, field: number if isinstance(FIELDS[field], int) else text}
    if changed[field] == FIELDS[field]:
        return
    assert not TimerMac([KEY_A]).verify(mac, **changed)


def test_no_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="timer_command_keys"):
        TimerMac([])
    with pytest.raises(ConfigError, match="timer_command_keys"):
        TimerMac([b""])


def test_keys_come_from_the_environment_as_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().security.uses_local_stack_key()
    monkeypatch.setenv(
        "CLICKCASH_SECURITY__TIMER_COMMAND_KEYS", orjson.dumps([KEY_B.decode(), KEY_A.decode()]).decode()
    )
    security = load_settings().security
    assert not security.uses_local_stack_key()
    assert security.timer_mac().sign(**FIELDS) == TimerMac([KEY_B]).sign(**FIELDS)
    assert KEY_A.decode() not in repr(security), "keys are secrets: never printed"
    monkeypatch.setenv("CLICKCASH_SECURITY__TIMER_COMMAND_KEYS", '["short"]')
    with pytest.raises(ConfigError, match="CLICKCASH_SECURITY__TIMER_COMMAND_KEYS"):
        load_settings()


class _Index:
    def due(self, partitions: Sequence[int], now_ms: int, limit: int) -> list[DueTimer]:
        return [DueTimer(3, "c-1\x1fo-1\x1fplan-1\x1f2", 1_765_000_000_000)]


def test_the_pump_fires_commands_signed_with_the_configured_key() -> None:
    pump = TimerPump(_Index(), interval_s=0, signer=TimerMac([KEY_A]))
    [timer] = pump.poll([3], now_s=100.0)
    key, value = timer.command()
    data = orjson.loads(value)["data"]
    assert key == b"c-1"
    assert TimerMac([KEY_A]).verify(data.pop("mac"), event_id=orjson.loads(value)["id"], **data)
    assert not TimerMac([LOCAL_STACK_TIMER_KEY.encode()]).verify(
        orjson.loads(value)["data"]["mac"], event_id=orjson.loads(value)["id"], **data
    )


def test_run_against_a_ray_cluster_refuses_the_published_local_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--address", "auto"]) == 2
    err = capsys.readouterr().err
    assert "CLICKCASH_SECURITY__TIMER_COMMAND_KEYS" in err and "local-stack key" in err
