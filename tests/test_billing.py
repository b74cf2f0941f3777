"""The shared billing arithmetic: exact, and the same in routing and the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from faxfleet import billing
from faxfleet.accounting import destination, price
from faxfleet.messages import TariffTerms
from routing.costs import parse_csv

TABLE = parse_csv(
    "prefix,price_per_minute,connection_fee,first_increment,next_increment,currency,days,"
    "start,end,description\n"
    "1,0.013,0.02,60,6,EUR,*,,,US\n"
    "33,0.15,0,30,30,EUR,mon-fri,08:00,18:00,France day\n"
    '33,0.05,0,30,30,EUR,"sat,sun",,,France weekend\n',
    site="paris",
    timezone="Europe/Paris",
)


@pytest.mark.parametrize(
    ("seconds", "first", "nxt", "billed"),
    [(0, 30, 6, 30), (30, 30, 6, 30), (30.001, 30, 6, 36), (95.2, 30, 6, 96), (61, 60, 1, 61)],
)
def test_billed_seconds(seconds: float, first: int, nxt: int, billed: int) -> None:
    assert billing.billed_seconds(seconds, first, nxt) == billed


def test_cost_is_exact_decimal() -> None:
    cost = billing.call_cost(
        100,
        price_per_minute=Decimal("0.1"),
        connection_fee=Decimal("0.01"),
        first_increment=60,
        next_increment=60,
    )
    assert cost == Decimal("0.210000") and isinstance(cost, Decimal)
    assert billing.display(Decimal("0.125"), "EUR") == "0.13"
    assert billing.display(Decimal("12.5"), "JPY") == "13"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "x"])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises((ValueError, TypeError, ArithmeticError)):
        billing.billed_seconds(bad, 30, 6)


@pytest.mark.parametrize("seconds", [0, 1, 29.5, 60, 61, 119.999, 600, 3601.25])
def test_routing_and_the_carried_terms_price_alike(seconds: float) -> None:
    at = datetime(2030, 1, 8, 10, 0, tzinfo=UTC)  # a Tuesday
    for number in ("+12125550100", "+33142685300"):
        tariff = TABLE.lookup(number, at)
        assert tariff is not None
        terms = TariffTerms.model_validate_json(tariff.terms().model_dump_json())
        assert terms.cost(seconds) == tariff.cost(seconds) == TABLE.call_cost(number, at, seconds)


def test_a_call_that_never_connected_is_free() -> None:
    terms = TABLE.lookup("+12125550100", datetime(2030, 1, 8, tzinfo=UTC)).terms()
    assert price(terms, 40, connected=False) == (Decimal(0), 0)
    assert price(terms, 40, connected=True) == (Decimal("0.033000"), 60)
    assert price(None, 40, connected=True) == (None, None)


def test_old_messages_without_a_tariff_still_parse() -> None:
    from faxfleet.messages import AttemptResult, Routed

    old = (
        '{"kind":"routed","job_id":"fx","recipient":0,"attempt":1,"site":"p",'
        '"at":"2030-01-01T00:00:00Z"}'
    )
    assert Routed.model_validate_json(old).tariff is None
    res = AttemptResult.model_validate_json(
        '{"job_id":"fx","recipient":0,"attempt":1,"seq":1,"site":"p","line":"l","ok":true,'
        '"pages_confirmed":1,"connected":true,"at":"2030-01-01T00:00:00Z"}'
    )
    assert res.tariff is None


def test_terms_refuse_bad_prices() -> None:
    with pytest.raises(ValueError):
        TariffTerms(
            price_per_minute="-1",
            connection_fee="0",
            first_increment=1,
            next_increment=1,
            currency="EUR",
        )
    with pytest.raises(ValueError):
        TariffTerms(
            price_per_minute="1",
            connection_fee="0",
            first_increment=1,
            next_increment=1,
            currency="euro",
        )


def test_destination() -> None:
    assert destination("+33142685300") == "+33 FR"
    assert destination("+12125550100") == "+1 US"
    assert destination("+442071234567") == "+44 GB"
