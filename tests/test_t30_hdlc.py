"""HDLC framing for T.30: the FCS, bit order and frame layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.fax.t30 import hdlc


def test_fcs_check_value_is_the_x25_crc() -> None:
    assert hdlc.fcs(b"123456789") == b"\x6e\x90"


def test_frame_with_its_fcs_leaves_the_good_residue() -> None:
    dis = bytes.fromhex("ff1380 00eef844".replace(" ", ""))
    assert hdlc.fcs_ok(dis + hdlc.fcs(dis))


@given(st.binary(min_size=1, max_size=300), st.integers(0, 8 * 300 - 1))
def test_any_single_bit_error_is_caught(data: bytes, position: int) -> None:
    framed = bytearray(data + hdlc.fcs(data))
    position %= len(framed) * 8
    framed[position // 8] ^= 1 << (position % 8)
    assert not hdlc.fcs_ok(bytes(framed))


def test_reverse_bits() -> None:
    assert hdlc.reverse_bits(b"\x01\x80\x0f\xa0") == b"\x80\x01\xf0\x05"
    assert hdlc.reverse_bits(hdlc.reverse_bits(bytes(range(256)))) == bytes(range(256))


def test_encode_sets_control_and_x_bit() -> None:
    assert hdlc.Frame(0x82, b"\x00", x=True).encode() == b"\xff\x13\x83\x00"
    assert hdlc.Frame(0x42, final=False).encode() == b"\xff\x03\x42"


def test_parse_separates_the_x_bit_but_not_from_identification_frames() -> None:
    dcs = hdlc.parse(b"\xff\x13\x83\x00\x46\x00")
    assert (dcs.fcf, dcs.x, dcs.final, dcs.fif) == (0x82, True, True, b"\x00\x46\x00")
    dtc = hdlc.parse(b"\xff\x13\x81\x00\x00\x00")
    assert (dtc.fcf, dtc.x) == (0x81, False)
    csi = hdlc.parse(b"\xff\x03\x40" + b" " * 20)
    assert (csi.fcf, csi.final) == (0x40, False)


@pytest.mark.parametrize("data", [b"\xff\x13", b"\xfe\x13\x80", b"\xff\x07\x80"])
def test_parse_rejects_what_is_not_a_frame(data: bytes) -> None:
    with pytest.raises(hdlc.FrameError):
        hdlc.parse(data)
