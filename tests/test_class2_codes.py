"""Class 2.0 response parsing and the hang-up code table (pure, no modem)."""

from __future__ import annotations

import pytest

from faxfleet.messages import Cause
from workers.fax.class2.codes import (
    _RANGES,
    HANGUP_CODES,
    Connected,
    HangupReport,
    PageStatus,
    Params,
    ParamsReport,
    Phase,
    PostPage,
    PostPageReport,
    Ppr,
    StationId,
    class2_hangup,
    hangup,
    negotiate,
    parse_report,
    quote_id,
)
from workers.render.coding import Coding


@pytest.mark.parametrize(
    ("code", "phase", "cause"),
    [
        ("00", Phase.CALL, None),
        ("01", Phase.CALL, Cause.NOT_A_FAX),
        ("03", Phase.CALL, Cause.REMOTE_DISCONNECTED),
        ("04", Phase.CALL, Cause.NO_ANSWER),
        ("05", Phase.CALL, Cause.NO_ANSWER),
        ("11", Phase.TX_A, Cause.NOT_A_FAX),
        ("20", Phase.TX_B, Cause.PROTOCOL_ERROR),
        ("25", Phase.TX_B, Cause.REMOTE_DISCONNECTED),
        ("27", Phase.TX_B, Cause.TRAINING_FAILED),
        ("43", Phase.TX_C, Cause.MODEM_ERROR),
        ("52", Phase.TX_D, Cause.REMOTE_DISCONNECTED),
        ("53", Phase.TX_D, Cause.PROTOCOL_ERROR),
        ("54", Phase.TX_D, Cause.REMOTE_DISCONNECTED),
        ("58", Phase.TX_D, Cause.PAGE_REJECTED),
        ("73", Phase.RX_B, Cause.REMOTE_DISCONNECTED),
        ("93", Phase.RX_C, Cause.MODEM_ERROR),
        ("A0", Phase.RX_D, Cause.PROTOCOL_ERROR),
        ("a3", Phase.RX_D, Cause.PROTOCOL_ERROR),
    ],
)
def test_named_hangup_codes(code: str, phase: Phase, cause: Cause | None) -> None:
    h = hangup(code)
    assert h.code == int(code, 16)
    assert h.phase is phase
    assert h.cause == cause
    assert h.normal == (code == "00")
    assert h.text.startswith(f"+FHS:{code.upper()} ")


@pytest.mark.parametrize(
    ("code", "phase", "cause"),
    [
        (0x0A, Phase.CALL, Cause.MODEM_ERROR),
        (0x1F, Phase.TX_A, Cause.NO_CARRIER),
        (0x3F, Phase.TX_B, Cause.PROTOCOL_ERROR),
        (0x4E, Phase.TX_C, Cause.MODEM_ERROR),
        (0x6A, Phase.TX_D, Cause.PROTOCOL_ERROR),
        (0x8F, Phase.RX_B, Cause.PROTOCOL_ERROR),
        (0x99, Phase.RX_C, Cause.PROTOCOL_ERROR),
        (0xBF, Phase.RX_D, Cause.PROTOCOL_ERROR),
        (0xE0, Phase.RESERVED, Cause.MODEM_ERROR),
    ],
)
def test_unnamed_codes_fall_in_their_phase_range(code: int, phase: Phase, cause: Cause) -> None:
    assert code not in HANGUP_CODES
    h = hangup(code)
    assert (h.phase, h.cause) == (phase, cause)


def test_codes_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        hangup(0x100)
    with pytest.raises(ValueError):
        hangup("zz")


def test_every_named_code_lies_in_its_phase_range() -> None:
    for code, h in HANGUP_CODES.items():
        (phase,) = [phase for low, high, phase, _ in _RANGES if low <= code <= high]
        assert h.phase is phase, h.text


@pytest.mark.parametrize(
    ("decimal", "hex_code"), [(0, 0x00), (11, 0x11), (27, 0x27), (54, 0x54), (100, 0xA0)]
)
def test_old_class2_decimal_codes(decimal: int, hex_code: int) -> None:
    assert class2_hangup(decimal) is HANGUP_CODES[hex_code]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,5,0,2,0,0,0,0", Params(0, 5, 0, 2, 0, 0, 0, 0)),
        ("1,3,0,0,1,0,0,7,0", Params(1, 3, 0, 0, 1, 0, 0, 7, 0)),
        (" 1 , 5 ", Params(vr=1, br=5)),
        ("1,,,2", Params(vr=1, ln=2)),
        ("10,D,0,2,3,1,0,0", Params(vr=0x10, br=0xD, ln=2, df=3, ec=1)),
    ],
)
def test_params_parse(text: str, expected: Params) -> None:
    assert Params.parse(text) == expected


@pytest.mark.parametrize("text", ["", "1,2,3,4,5,6,7,8,9,10", "1,x"])
def test_params_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Params.parse(text)


def test_params_round_trip_and_properties() -> None:
    p = Params(vr=1, br=5, wd=0, ln=2, df=1, ec=0, bf=0, st=3)
    assert p.format() == "1,5,0,2,1,0,0,3"
    assert Params.parse(p.format()) == p
    assert p.format(9) == "1,5,0,2,1,0,0,3,0"
    assert (p.bit_rate, p.fine, p.coding, p.width) == (14400, True, Coding.MR, 1728)
    assert Params(br=0).bit_rate == 2400
    assert Params(df=3).coding is Coding.MMR
    assert p.with_coding(Coding.MH).df == 0
    with pytest.raises(ValueError):
        Params(df=2).coding  # noqa: B018 (uncompressed mode is no coding)


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        # the lower of each; fine only when both do it; scan time from the receiver
        (
            Params(1, 5, 0, 2, 1, 0, 0, 0),
            Params(1, 3, 0, 2, 1, 0, 0, 5),
            Params(1, 3, 0, 2, 1, 0, 0, 5),
        ),
        (Params(1, 5, 0, 2, 1), Params(0, 5, 0, 0, 0), Params(0, 5, 0, 0, 0)),
        # MMR without ECM on both sides falls back to MR
        (Params(1, 5, 0, 2, 3, 1), Params(1, 5, 0, 2, 3, 0), Params(1, 5, 0, 2, 1, 0)),
        (Params(1, 5, 0, 2, 3, 1), Params(1, 5, 0, 2, 3, 1), Params(1, 5, 0, 2, 3, 1)),
    ],
)
def test_negotiate(local: Params, remote: Params, expected: Params) -> None:
    assert negotiate(local, remote) == expected


@pytest.mark.parametrize(
    ("line", "report"),
    [
        ("+FCO", Connected()),
        ("+FCON", Connected()),
        ('+FCI:"  +1 555 0100      "', StationId("csi", "+1 555 0100")),
        ('+FCSI: "REMOTE"', StationId("csi", "REMOTE")),
        ('+FTI:"SENDER"', StationId("tsi", "SENDER")),
        ("+FIS:1,5,0,2,1,0,0,0", ParamsReport("dis", Params(1, 5, 0, 2, 1))),
        ("+FDIS:0,3,0,2,0,0,0,0", ParamsReport("dis", Params(0, 3, 0, 2))),
        ("+FCS:1,5,0,2,0,0,0,0", ParamsReport("dcs", Params(1, 5, 0, 2))),
        ("+FDCS:0,1,0,0,0,0,0,0", ParamsReport("dcs", Params(br=1))),
        ("+FPS:1,478,0,0,0", PageStatus(Ppr.MCF, 0x478, 0)),
        ("+FPS:2", PageStatus(Ppr.RTN)),
        ("+FPTS:1,1143,0,0", PageStatus(Ppr.MCF, 1143, 0)),
        ("+FET:0", PostPageReport(0)),
        ("+FHS:27", HangupReport(HANGUP_CODES[0x27])),
        ("+FHS:00", HangupReport(HANGUP_CODES[0x00])),
        ("+FHNG:100", HangupReport(HANGUP_CODES[0xA0])),
    ],
)
def test_parse_report(line: str, report: object) -> None:
    assert parse_report(line) == report


@pytest.mark.parametrize("line", ["OK", "CONNECT", "RING", "+FPS:", "+FHS:xyz", "+FOO:1"])
def test_lines_that_are_no_report(line: str) -> None:
    assert parse_report(line) is None


def test_post_page_codes() -> None:
    assert [p.dle_code for p in PostPage] == [b",", b";", b"."]
    assert PostPage.from_dle_code(ord(".")) is PostPage.EOP
    assert PostPage.from_dle_code(ord("x")) is None
    assert [p for p in Ppr if p.page_good] == [Ppr.MCF, Ppr.RTP, Ppr.PIP]


def test_quote_id() -> None:
    assert quote_id("ACME fax") == '"ACME fax"'
    assert quote_id('say "hi"\x07') == '"say hi"'
    assert quote_id("x" * 30) == '"' + "x" * 20 + '"'
