"""Choosing the session (DCS) from what we want and what the far machine's DIS offers.

The rules, each the one T.30 leaves to the sender:

- **Rate**: the fastest rate both modems have, in the order of :data:`.frames.FALLBACK`
  (V.17 14400, 12000, 9600, 7200, V.29 9600, 7200, V.27 ter 4800, 2400). After a failed
  training the next slower common rate is tried (:func:`fall_back`).
- **ECM**: when both sides have it and we want it.
- **Coding**: MMR (T.6) only with ECM on both sides, else MR if both have it, else MH.
- **Resolution**: fine only if the page is fine and the receiver accepts fine; a fine page
  sent to a standard-only machine must be converted to standard (every other row).
- **Width** is always 1728 pixels (215 mm, which every Group 3 machine accepts) and the
  length A4.
- **Minimum scan-line time**: the receiver's, halved for fine lines when its DIS allows;
  none with ECM, where the receiver buffers whole blocks before printing.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.render.coding import Coding

from .frames import FALLBACK, Capabilities, Length, Parameters, Rate


@dataclass(frozen=True)
class Wishes:
    """What our side can and would like to do."""

    rates: tuple[Rate, ...] = FALLBACK
    fine: bool = True
    """Sending: the pages are fine (the sender turns this off by itself when a page is
    standard). Receiving: we accept fine pages."""
    codings: frozenset[Coding] = frozenset({Coding.MH, Coding.MR, Coding.MMR})
    ecm: bool = True
    ecm_frame_size: int = 256


def common_rates(ours: Wishes, remote: Capabilities) -> tuple[Rate, ...]:
    """Rates both sides can use, fastest first."""
    return tuple(rate for rate in FALLBACK if rate in ours.rates and rate.modem in remote.modems)


def _coding(ours: Wishes, remote: Capabilities, ecm: bool) -> Coding:
    if ecm and remote.mmr and Coding.MMR in ours.codings:
        return Coding.MMR
    if remote.mr and Coding.MR in ours.codings:
        return Coding.MR
    return Coding.MH


def choose(ours: Wishes, remote: Capabilities, rate: Rate | None = None) -> Parameters | None:
    """The DCS to send, or None when no rate is common (the call cannot go on).

    ``rate`` forces a rate (it must be common); by default the fastest common one.
    """
    rates = common_rates(ours, remote)
    if not rates:
        return None
    if rate is None:
        rate = rates[0]
    elif rate not in rates:
        return None
    ecm = ours.ecm and remote.ecm
    fine = ours.fine and remote.fine
    return Parameters(
        rate=rate,
        fine=fine,
        coding=_coding(ours, remote, ecm),
        ecm=ecm,
        ecm_frame_size=ours.ecm_frame_size if ecm else 256,
        min_scan_ms=0 if ecm else remote.scan_time_ms(fine),
        length=Length.A4,
    )


def fall_back(current: Parameters, ours: Wishes, remote: Capabilities) -> Parameters | None:
    """The same session one common rate slower, or None below the slowest."""
    rates = common_rates(ours, remote)
    slower = [rate for rate in rates if FALLBACK.index(rate) > FALLBACK.index(current.rate)]
    if not slower:
        return None
    return choose(ours, remote, slower[0])


def needs_standard_rows(ours: Wishes, params: Parameters) -> bool:
    """Whether fine pages must be converted to standard resolution for this session."""
    return ours.fine and not params.fine


def accept(ours: Wishes, params: Parameters) -> bool:
    """Whether a receiver with capabilities ``ours`` can honour a DCS."""
    return (
        params.rate in ours.rates and params.coding in ours.codings and (ours.ecm or not params.ecm)
    )
