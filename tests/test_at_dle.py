"""DLE framing: stuffing and incremental unstuffing, split at every possible point."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.fax.modem.dle import END, Unstuffer, stuff


def test_stuff_doubles_dle_only() -> None:
    assert stuff(b"\x00\x10\x03\x10") == b"\x00\x10\x10\x03\x10\x10"
    assert stuff(b"abc") == b"abc"


def test_unstuffer_stops_at_dle_etx_and_keeps_the_rest() -> None:
    u = Unstuffer()
    assert u.feed(b"ab\x10\x10c" + END + b"\r\nOK\r\n") == b"ab\x10c"
    assert u.done
    assert u.rest == b"\r\nOK\r\n"


def test_unstuffer_handles_dle_split_across_reads() -> None:
    u = Unstuffer()
    assert u.feed(b"x\x10") == b"x"
    assert not u.done
    assert u.feed(b"\x10y\x10") == b"\x10y"
    assert u.feed(b"\x03tail") == b""
    assert u.done and u.rest == b"tail"


def test_dle_sub_is_two_dles_and_other_pairs_are_dropped() -> None:
    u = Unstuffer()
    assert u.feed(b"a\x10\x1ab\x10\x2ec" + END) == b"a\x10\x10bc"


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_round_trip_in_any_chunking(data: bytes, size: int) -> None:
    wire = stuff(data) + END + b"after"
    u = Unstuffer()
    out = bytearray()
    for i in range(0, len(wire), size):
        out += u.feed(wire[i : i + size])
    assert bytes(out) == data
    assert u.done and u.rest.endswith(b"after")


@pytest.mark.parametrize("data", [b"\x10\x03", b"\x10" * 9, b""])
def test_dle_heavy_payloads(data: bytes) -> None:
    u = Unstuffer()
    assert u.feed(stuff(data) + END) == data and u.done
