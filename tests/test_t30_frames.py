"""T.30 frame codes and the DIS/DCS field codec, on byte strings computed from Table 2."""

from __future__ import annotations

import pytest

from workers.fax.t30.frames import (
    FALLBACK,
    Capabilities,
    Fcf,
    Length,
    Parameters,
    Pps,
    Rate,
    decode_ident,
    decode_ppr,
    encode_ident,
    encode_ppr,
)
from workers.render.coding import Coding


@pytest.mark.parametrize(
    ("fcf", "transmission_order"),
    [
        (Fcf.DIS, "00000001"),
        (Fcf.CSI, "00000010"),
        (Fcf.DTC, "10000001"),
        (Fcf.DCS, "01000001"),
        (Fcf.CFR, "00100001"),
        (Fcf.FTT, "00100010"),
        (Fcf.MPS, "01110010"),
        (Fcf.EOP, "01110100"),
        (Fcf.EOM, "01110001"),
        (Fcf.MCF, "00110001"),
        (Fcf.RTN, "00110010"),
        (Fcf.RTP, "00110011"),
        (Fcf.DCN, "01011111"),
        (Fcf.CRP, "01011000"),
        (Fcf.PPS, "01111101"),
        (Fcf.PPR, "00111101"),
        (Fcf.CTC, "01001000"),
        (Fcf.CTR, "00100011"),
        (Fcf.ERR, "00111000"),
        (Fcf.RR, "01110110"),
        (Fcf.RNR, "00110111"),
        (Fcf.EOR, "01110011"),
        (Fcf.FCD, "01100000"),
        (Fcf.RCP, "01100001"),
    ],
)
def test_fcf_bytes_are_the_t30_bits_in_line_order(fcf: Fcf, transmission_order: str) -> None:
    # T.30 writes bits in the order they are sent; the first one is the byte's LSB here.
    assert int(transmission_order[::-1], 2) == fcf


# A V.17 machine with ECM and T.6: bits 10, 11 12 14, 15, 16 | 20, 21 22 23, 24 | 27, 31.
MODERN_DIS = bytes.fromhex("00eef844")
# A V.29 machine without ECM: MR, fine, A4 only, 20 ms per line.
CLASSIC_DIS = bytes.fromhex("00ce00")
# A V.27 ter only machine, standard resolution, 40 ms, fine lines half (code 101).
OLD_DIS = bytes.fromhex("000a50")


def test_modern_dis() -> None:
    caps = Capabilities.decode(MODERN_DIS)
    assert caps == Capabilities(
        modems=frozenset({"V17", "V29", "V27"}),
        fine=True,
        mr=True,
        mmr=True,
        ecm=True,
        min_scan_ms=0,
        length=Length.UNLIMITED,
    )
    assert caps.encode() == MODERN_DIS
    assert caps.rates()[0] is Rate.V17_14400


def test_classic_dis() -> None:
    caps = Capabilities.decode(CLASSIC_DIS)
    assert caps.modems == frozenset({"V29", "V27"})
    assert (caps.fine, caps.mr, caps.mmr, caps.ecm) == (True, True, False, False)
    assert (caps.min_scan_ms, caps.length) == (20, Length.A4)
    assert caps.encode() == CLASSIC_DIS
    assert caps.rates() == (Rate.V29_9600, Rate.V29_7200, Rate.V27_4800, Rate.V27_2400)


def test_old_dis_with_half_scan_time_for_fine() -> None:
    caps = Capabilities.decode(OLD_DIS)
    assert caps.modems == frozenset({"V27"})
    assert (caps.fine, caps.mr) == (False, False)
    assert (caps.min_scan_ms, caps.half_for_fine) == (40, True)
    assert caps.scan_time_ms(fine=True) == 20
    assert caps.scan_time_ms(fine=False) == 40
    assert caps.encode() == OLD_DIS


def test_t6_bit_without_extension_is_ignored() -> None:
    # Bit 31 set but bit 24 clear: the fourth byte is not part of the field.
    assert not Capabilities.decode(bytes.fromhex("00ee7844")).mmr


def test_every_rate_round_trips_through_dcs() -> None:
    for rate in FALLBACK:
        params = Parameters(rate=rate, fine=True, coding=Coding.MR, min_scan_ms=10)
        assert Parameters.decode(params.encode()) == params


def test_dcs_bytes() -> None:
    # V.17 14400 (bit 14), receive (10), fine (15), ECM (27), T.6 (31), 0 ms (21-23), 64-byte
    # frames (28), extension (24).
    params = Parameters(
        rate=Rate.V17_14400, fine=True, coding=Coding.MMR, ecm=True, ecm_frame_size=64
    )
    assert params.encode() == bytes.fromhex("0062f04c")
    assert Parameters.decode(bytes.fromhex("0062f04c")) == params
    # V.29 9600 (bit 11), MH, standard, 20 ms: just bits 10 and 11.
    assert Parameters(rate=Rate.V29_9600, min_scan_ms=20).encode() == bytes.fromhex("000600")


def test_dcs_rejects_mmr_without_ecm_and_unknown_rates() -> None:
    with pytest.raises(ValueError, match="error correction"):
        Parameters(rate=Rate.V29_9600, coding=Coding.MMR)
    with pytest.raises(ValueError, match="no data rate"):
        Parameters.decode(bytes.fromhex("001e00"))  # bits 11-14 = 1110: reserved


def test_identifiers_are_reversed_and_padded() -> None:
    fif = encode_ident("+1 555 0100")
    assert fif == b"0010 555 1+         "
    assert len(fif) == 20
    assert decode_ident(fif) == "+1 555 0100"
    assert decode_ident(encode_ident("x" * 30)) == "x" * 20


def test_pps_and_ppr_fields() -> None:
    pps = Pps(command=int(Fcf.EOP), page=3, block=0, frames=256)
    assert pps.encode() == bytes((0x2E, 3, 0, 255))
    assert Pps.decode(bytes((0x2F, 3, 0, 255))) == pps
    fif = encode_ppr({0, 9, 255})
    assert fif[0] == 0x01 and fif[1] == 0x02 and fif[31] == 0x80
    assert decode_ppr(fif) == {0, 9, 255}
