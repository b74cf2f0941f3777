"""The destination policy as plain code: E.164 numbers and policies in, a decision out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from faxfleet.destinations import (
    FleetPolicy,
    Rules,
    TenantPolicy,
    check,
    check_all,
    classify,
    pages_at_least,
    quota_reason,
)
from faxfleet.numbers import to_e164
from faxfleet.settings import Settings

FLEET = FleetPolicy.from_settings(Settings())
"""The policy a fleet has out of the box."""


def rules(tenant: TenantPolicy | None = None, fleet: FleetPolicy = FLEET) -> Rules:
    return Rules("acme", fleet, tenant or TenantPolicy())


def refused(number: str, r: Rules | None = None) -> str | None:
    refusal = check(classify(to_e164(number)), r or rules())
    return refusal.rule if refusal else None


BARRED_BY_DEFAULT = [
    # premium rate
    ("+33 8 99 12 34 56", "premium_rate", "FR"),
    ("+33 8 91 12 34 56", "premium_rate", "FR"),
    ("+33 8 92 12 34 56", "premium_rate", "FR"),
    ("+33 8 97 12 34 56", "premium_rate", "FR"),
    ("+44 90 1234 5678", "premium_rate", "GB"),
    ("+44 91 1234 5678", "premium_rate", "GB"),
    ("+44 871 234 5678", "premium_rate", "GB"),
    ("+1 900 555 1234", "premium_rate", "US"),
    ("+32 90 12 34 56", "premium_rate", "BE"),
    ("+41 900 123 456", "premium_rate", "CH"),
    ("+43 900 123456", "premium_rate", "AT"),
    ("+34 803 123 456", "premium_rate", "ES"),
    ("+31 909 123456", "premium_rate", "NL"),
    # shared cost (revenue share)
    ("+33 8 20 12 34 56", "shared_cost", "FR"),
    ("+33 8 10 12 34 56", "shared_cost", "FR"),
    ("+49 137 1234567", "shared_cost", "DE"),
    ("+49 180 1234567", "shared_cost", "DE"),
    # personal numbers and pagers
    ("+44 70 1234 5678", "personal_number", "GB"),
    ("+49 700 12345678", "personal_number", "DE"),
    ("+1 500 555 0100", "personal_number", "US"),
]


@pytest.mark.parametrize(("number", "kind", "region"), BARRED_BY_DEFAULT)
def test_costly_numbers_are_barred_out_of_the_box(number: str, kind: str, region: str) -> None:
    destination = classify(to_e164(number))
    assert (destination.type, destination.region) == (kind, region)
    refusal = check(destination, rules())
    assert refusal is not None
    assert refusal.rule == "FAXFLEET_DESTINATION_BARRED_TYPES"
    assert destination.number in refusal.reason and region in refusal.reason
    assert kind.split("_")[0] in refusal.reason.replace("-", "_")


@pytest.mark.parametrize(
    "number",
    [
        "+881 6 1234 5678",  # satellite (Iridium)
        "+979 1 2345 6789",  # international premium rate
        "+883 5100 1234 5",  # international networks
    ],
)
def test_non_geographic_numbers_are_barred_out_of_the_box(number: str) -> None:
    destination = classify(to_e164(number))
    assert destination.region == "001"
    assert check(destination, rules()) is not None


ALLOWED_BY_DEFAULT = [
    ("+33 1 42 68 53 00", "fixed_line"),  # Paris
    ("+33 4 91 00 00 00", "fixed_line"),  # Marseille
    ("+33 9 99 00 01 11", "voip"),  # French box numbers carry faxes
    ("+33 6 12 34 56 78", "mobile"),
    ("+33 8 00 12 34 56", "toll_free"),
    ("+33 8 06 12 34 56", "uan"),
    ("+44 20 7946 0000", "fixed_line"),
    ("+44 300 123 4567", "uan"),  # geographic rate
    ("+44 800 123 4567", "toll_free"),
    ("+1 212 555 0100", "fixed_line_or_mobile"),
    ("+1 800 555 0100", "toll_free"),
    ("+49 30 12345678", "fixed_line"),
    ("+81 3 1234 5678", "fixed_line"),
    ("+39 06 1234 5678", "fixed_line"),
]


@pytest.mark.parametrize(("number", "kind"), ALLOWED_BY_DEFAULT)
def test_ordinary_numbers_are_allowed(number: str, kind: str) -> None:
    destination = classify(to_e164(number))
    assert destination.type == kind
    assert check(destination, rules()) is None


def test_every_number_the_tests_dial_is_allowed_by_default() -> None:
    """The fleet tests send to numbers like these; the defaults must not bar them."""
    here = Path(__file__).parent
    found = set()
    for path in here.glob("*.py"):
        if path.name.startswith(("test_destinations", "test_alter")):
            continue  # tests of the policy itself, which dial barred numbers on purpose
        found |= set(re.findall(r"\"(\+(?:33|1|44|49|81|39)\d{8,11})\"", path.read_text()))
    valid = set()
    for number in found:
        try:
            valid.add(to_e164(number))
        except ValueError:
            continue
    assert len(valid) > 30
    barred = {n: refused(n) for n in valid if refused(n)}
    assert barred == {}


def test_a_tenant_may_be_granted_a_type() -> None:
    granted = rules(TenantPolicy(allow_types=["premium_rate"]))
    assert refused("+33 8 99 12 34 56", granted) is None
    assert refused("+44 70 1234 5678", granted) == "FAXFLEET_DESTINATION_BARRED_TYPES"


def test_a_tenant_may_be_stricter() -> None:
    strict = rules(TenantPolicy(bar_types=["mobile", "toll_free"], allowed_regions=["FR"]))
    assert refused("+33 6 12 34 56 78", strict) == "tenant policy bar_types"
    assert refused("+33 8 00 12 34 56", strict) == "tenant policy bar_types"
    assert refused("+44 20 7946 0000", strict) == "tenant policy allowed_regions"
    assert refused("+33 1 42 68 53 00", strict) is None
    # Stricter never loosens: a premium-rate number stays barred.
    assert refused("+33 8 99 12 34 56", strict) == "FAXFLEET_DESTINATION_BARRED_TYPES"
    barred_region = rules(TenantPolicy(bar_regions=["US"]))
    assert refused("+1 212 555 0100", barred_region) == "tenant policy bar_regions"


def test_fleet_regions() -> None:
    europe = FleetPolicy.from_settings(Settings(destination_allowed_regions="fr, BE,gb"))
    assert refused("+33 1 42 68 53 00", rules(fleet=europe)) is None
    assert refused("+44 20 7946 0000", rules(fleet=europe)) is None
    refusal = check(classify("+12125550100"), rules(fleet=europe))
    assert refusal is not None
    assert refusal.rule == "FAXFLEET_DESTINATION_ALLOWED_REGIONS"
    assert "+12125550100" in refusal.reason and "US" in refusal.reason
    assert "BE, FR, GB" in refusal.reason
    # A tenant granted a region passes the fleet's region rules (not its type rules).
    granted = rules(TenantPolicy(allow_regions=["US"]), fleet=europe)
    assert refused("+1 212 555 0100", granted) is None
    assert refused("+1 900 555 1234", granted) == "FAXFLEET_DESTINATION_BARRED_TYPES"
    no_germany = FleetPolicy.from_settings(Settings(destination_barred_regions="DE,001"))
    assert refused("+49 30 12345678", rules(fleet=no_germany)) == (
        "FAXFLEET_DESTINATION_BARRED_REGIONS"
    )
    satellite = rules(TenantPolicy(allow_regions=["001"]))
    assert refused("+881 6 1234 5678", satellite) is None


def test_the_fleet_may_allow_every_type() -> None:
    open_fleet = FleetPolicy.from_settings(
        Settings(destination_barred_types="", destination_barred_regions="")
    )
    assert refused("+33 8 99 12 34 56", rules(fleet=open_fleet)) is None
    assert refused("+881 6 1234 5678", rules(fleet=open_fleet)) is None


def test_reasons_name_number_type_region_and_rule() -> None:
    found = check_all(["+33142685300", "+33899123456", "+19005551234"], rules())
    assert [i for i, _ in found] == [1, 2]
    reason = found[0][1].reason
    assert reason == (
        "+33899123456 (premium-rate, FR): premium-rate numbers are barred by the fleet "
        "(FAXFLEET_DESTINATION_BARRED_TYPES)"
    )
    tenant = check(classify("+33612345678"), rules(TenantPolicy(bar_types=["mobile"])))
    assert tenant is not None
    assert tenant.reason == (
        "+33612345678 (mobile, FR): mobile numbers are barred for tenant acme "
        "(tenant policy bar_types)"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("destination_barred_types", "premium"),  # a typo must not open premium numbers
        ("destination_barred_types", "premium_rate,pagers"),
        ("destination_allowed_regions", "FR,XX"),
        ("destination_barred_regions", "France"),
        ("daily_page_quota", "-1"),
    ],
)
def test_settings_refuse_unknown_names(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_tenant_policy_is_validated() -> None:
    assert TenantPolicy(bar_types=["Mobile"], allowed_regions=["fr"]).bar_types == ["mobile"]
    assert TenantPolicy(allowed_regions=["fr", "be"]).allowed_regions == ["BE", "FR"]
    for bad in (
        {"bar_types": ["premium"]},
        {"allow_regions": ["XX"]},
        {"bar_types": ["mobile"], "allow_types": ["mobile"]},
        {"bar_regions": ["FR"], "allow_regions": ["FR"]},
        {"daily_pages": -5},
        {"unknown_field": 1},
    ):
        with pytest.raises(ValidationError):
            TenantPolicy.model_validate(bad)


def test_quota_follows_the_tenant_then_the_fleet() -> None:
    fleet = FleetPolicy.from_settings(Settings(daily_page_quota=100))
    assert rules(fleet=fleet).daily_pages == 100
    assert rules(TenantPolicy(daily_pages=5), fleet=fleet).daily_pages == 5
    assert rules(TenantPolicy(daily_pages=1000), fleet=fleet).daily_pages == 1000
    assert rules().daily_pages is None


def test_pages_at_least() -> None:
    assert pages_at_least(recipients=3, documents=2, cover=False) == 6
    assert pages_at_least(recipients=3, documents=2, cover=True) == 9
    assert quota_reason("acme", 10, 8, 3, at_least=True) == (
        "daily page quota of tenant acme exceeded: 8 of 10 pages used today (UTC), "
        "this fax needs at least 3 (pages times recipients)"
    )
