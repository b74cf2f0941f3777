"""Negotiation: the DCS a sender picks from its wishes and a DIS."""

from __future__ import annotations

from workers.fax.t30.frames import Capabilities, Rate
from workers.fax.t30.negotiate import Wishes, accept, choose, fall_back, needs_standard_rows
from workers.render.coding import Coding

MODERN = Capabilities.decode(bytes.fromhex("00eef844"))
CLASSIC = Capabilities.decode(bytes.fromhex("00ce00"))
OLD = Capabilities.decode(bytes.fromhex("000a50"))


def test_modern_pair_gets_v17_ecm_mmr_fine() -> None:
    params = choose(Wishes(), MODERN)
    assert params is not None
    assert (params.rate, params.ecm, params.coding, params.fine) == (
        Rate.V17_14400,
        True,
        Coding.MMR,
        True,
    )
    assert params.min_scan_ms == 0


def test_without_ecm_on_our_side_mmr_is_never_chosen() -> None:
    params = choose(Wishes(ecm=False), MODERN)
    assert params is not None
    assert (params.ecm, params.coding) == (False, Coding.MR)


def test_classic_machine_gets_v29_mr_and_its_scan_time() -> None:
    params = choose(Wishes(), CLASSIC)
    assert params is not None
    assert (params.rate, params.coding, params.ecm, params.min_scan_ms) == (
        Rate.V29_9600,
        Coding.MR,
        False,
        20,
    )


def test_standard_only_machine_forces_conversion_and_mh() -> None:
    ours = Wishes()
    params = choose(ours, OLD)
    assert params is not None
    assert (params.rate, params.fine, params.coding, params.min_scan_ms) == (
        Rate.V27_4800,
        False,
        Coding.MH,
        40,
    )
    assert needs_standard_rows(ours, params)


def test_half_scan_time_for_fine_lines() -> None:
    remote = Capabilities(modems=frozenset({"V29"}), fine=True, min_scan_ms=40, half_for_fine=True)
    params = choose(Wishes(ecm=False), remote)
    assert params is not None and params.min_scan_ms == 20


def test_fallback_chain_walks_every_common_rate_then_stops() -> None:
    ours = Wishes()
    params = choose(ours, MODERN)
    seen = []
    while params is not None:
        seen.append(params.rate)
        params = fall_back(params, ours, MODERN)
    assert seen == [
        Rate.V17_14400,
        Rate.V17_12000,
        Rate.V17_9600,
        Rate.V17_7200,
        Rate.V29_9600,
        Rate.V29_7200,
        Rate.V27_4800,
        Rate.V27_2400,
    ]


def test_fallback_skips_rates_our_modem_lacks() -> None:
    ours = Wishes(rates=(Rate.V29_9600, Rate.V27_4800))
    params = choose(ours, MODERN)
    assert params is not None and params.rate is Rate.V29_9600
    slower = fall_back(params, ours, MODERN)
    assert slower is not None and slower.rate is Rate.V27_4800
    assert fall_back(slower, ours, MODERN) is None


def test_no_common_rate() -> None:
    assert choose(Wishes(rates=(Rate.V17_14400,)), CLASSIC) is None


def test_receiver_accepts_only_what_it_offers() -> None:
    params = choose(Wishes(), MODERN)
    assert params is not None
    assert accept(Wishes(), params)
    assert not accept(Wishes(ecm=False, codings=frozenset({Coding.MH})), params)
