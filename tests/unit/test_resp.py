"""The state store's own command packing (``actors/state/resp.py``) sends what redis-py would send."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.connection import PythonRespSerializer

from clickcash.actors.state.resp import pack_command


def _redis_py(args: list[bytes]) -> bytes:
    # redis-py's pure-Python packer (its hiredis one gives the same bytes); a cutoff above any argument
    # keeps it to one chunk
    return b"".join(PythonRespSerializer(1 << 30, lambda a: a).pack(*args))


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=40))
def test_the_bytes_are_redis_pys_for_any_arguments(args: list[bytes]) -> None:
    args = [b"EVALSHA", *args]  # redis-py splits a first argument holding a space: a command name never does
    assert pack_command(args) == _redis_py(args)


def test_an_empty_argument_and_a_large_one() -> None:
    big = bytes(range(256)) * 40
    assert pack_command([b"SET", b"k", big]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10240\r\n" + big + b"\r\n"
    assert pack_command([b"MGET", b""]) == b"*2\r\n$4\r\nMGET\r\n$0\r\n\r\n"
