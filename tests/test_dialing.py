"""routing.dialing: from an E.164 number to the digits a site's modem dials."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from routing.dialing import CallZone, DialingRules, dial_string, zone

PARIS = DialingRules(
    country_code=33,
    area_code="1",
    national_prefix="0",
    international_prefix="00",
    local_format="national",
)
NEW_YORK = DialingRules(
    country_code=1,
    area_code="212",
    national_prefix="1",
    international_prefix="011",
    local_area_codes=["646", "917"],
    local_format="subscriber",
)
LONDON = DialingRules(
    country_code=44,
    area_code="20",
    national_prefix="0",
    international_prefix="00",
    local_format="subscriber",
)
ROME = DialingRules(country_code=39, area_code="06", national_prefix="", international_prefix="00")

LOCAL, NATIONAL, INTERNATIONAL = CallZone.LOCAL, CallZone.NATIONAL, CallZone.INTERNATIONAL


@pytest.mark.parametrize(
    ("site", "number", "expected_zone", "digits"),
    [
        # Paris: local calls keep the full national number, as France requires
        (PARIS, "+33142685300", LOCAL, "0142685300"),
        (PARIS, "+33491000000", NATIONAL, "0491000000"),  # Marseille
        (PARIS, "+33612345678", NATIONAL, "0612345678"),  # mobile: no area code
        (PARIS, "+33800123456", NATIONAL, "0800123456"),  # freephone: no area code
        (PARIS, "+12125550100", INTERNATIONAL, "0012125550100"),
        (PARIS, "+442079460000", INTERNATIONAL, "00442079460000"),
        # New York: 7-digit local dialling over its own and the overlay area codes
        (NEW_YORK, "+12125550100", LOCAL, "5550100"),
        (NEW_YORK, "+16465550100", LOCAL, "5550100"),
        (NEW_YORK, "+19175550100", LOCAL, "5550100"),
        (NEW_YORK, "+13125550100", NATIONAL, "13125550100"),  # Chicago
        (NEW_YORK, "+14165550100", NATIONAL, "14165550100"),  # Toronto: same +1 zone
        (NEW_YORK, "+33142685300", INTERNATIONAL, "01133142685300"),
        (NEW_YORK, "+442079460000", INTERNATIONAL, "011442079460000"),
        # London: area code 20, subscriber dialling inside it
        (LONDON, "+442079460000", LOCAL, "79460000"),
        (LONDON, "+441614960000", NATIONAL, "01614960000"),  # Manchester
        (LONDON, "+447400123456", NATIONAL, "07400123456"),  # mobile: never local
        (LONDON, "+33142685300", INTERNATIONAL, "0033142685300"),
        (LONDON, "+12125550100", INTERNATIONAL, "0012125550100"),
        # Rome: no trunk prefix, the leading 0 belongs to the number
        (ROME, "+390612345678", LOCAL, "0612345678"),
        (ROME, "+390212345678", NATIONAL, "0212345678"),  # Milan
        (PARIS, "+390612345678", INTERNATIONAL, "00390612345678"),
    ],
)
def test_zone_and_dial_string(
    site: DialingRules, number: str, expected_zone: CallZone, digits: str
) -> None:
    assert zone(number, site) is expected_zone
    assert dial_string(number, site) == digits


@pytest.mark.parametrize(
    ("number", "digits"),
    [
        ("+12125550100", "95550100"),
        ("+13125550100", "913125550100"),
        ("+33142685300", "901133142685300"),
    ],
)
def test_outside_prefix_is_prepended_to_every_zone(number: str, digits: str) -> None:
    pbx = NEW_YORK.model_copy(update={"outside_prefix": "9"})
    assert dial_string(number, pbx) == digits
    assert zone(number, pbx) is zone(number, NEW_YORK)


def test_outside_prefix_on_a_french_pbx() -> None:
    pbx = DialingRules(
        country_code=33,
        area_code="1",
        outside_prefix="0",
        national_prefix="0",
        international_prefix="00",
    )
    assert dial_string("+33142685300", pbx) == "00142685300"
    assert dial_string("+12125550100", pbx) == "00012125550100"


def test_local_format_national_in_new_york_dials_the_trunk_prefix() -> None:
    ten_digit = NEW_YORK.model_copy(update={"local_format": "national"})
    assert zone("+16465550100", ten_digit) is LOCAL
    assert dial_string("+16465550100", ten_digit) == "16465550100"


def test_a_site_without_area_code_has_only_its_listed_local_codes() -> None:
    rules = DialingRules(
        country_code=33, national_prefix="0", international_prefix="00", local_area_codes=["4"]
    )
    assert zone("+33491000000", rules) is LOCAL
    assert zone("+33142685300", rules) is NATIONAL


def test_local_set_includes_the_own_area_code() -> None:
    assert NEW_YORK.local_set() == {"212", "646", "917"}
    assert (
        DialingRules(country_code=33, national_prefix="0", international_prefix="00").local_set()
        == frozenset()
    )


def test_rules_are_frozen() -> None:
    with pytest.raises(ValidationError):
        PARIS.area_code = "4"  # type: ignore[misc]


@pytest.mark.parametrize(
    "number",
    [
        "33142685300",  # no +
        "+33 1 42 68 53 00",  # spaces
        "+0142685300",  # no country code starts with 0
        "+331426853001234567",  # more than 15 digits
        "+",
        "",
        "+33abc",
        "+3314268530",  # too short for France
        "+999123456",  # no such country code
        "+1212555010",  # 9 digits in NANP
    ],
)
def test_invalid_numbers_raise_value_error(number: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164|valid number|phone number"):
        zone(number, PARIS)
    with pytest.raises(ValueError):
        dial_string(number, PARIS)


def test_invalid_number_message_names_the_number() -> None:
    with pytest.raises(ValueError, match=r"'\+3314268530' is not a valid number"):
        dial_string("+3314268530", PARIS)


def test_non_string_number_is_refused() -> None:
    with pytest.raises(ValueError, match=r"E\.164 string"):
        zone(33142685300, PARIS)  # type: ignore[arg-type]


BASE = {"country_code": 33, "national_prefix": "0", "international_prefix": "00"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"area_code": "1a"}, "area_code must be digits only"),
        ({"outside_prefix": "9,"}, "outside_prefix must be digits only"),
        ({"national_prefix": " 0"}, "national_prefix must be digits only"),
        ({"international_prefix": ""}, "international_prefix must be one or more digits"),
        ({"international_prefix": "+"}, "international_prefix must be one or more digits"),
        ({"local_area_codes": ["4", ""]}, r"local_area_codes\[1\] must be one or more digits"),
        ({"local_area_codes": ["x"]}, r"local_area_codes\[0\]"),
        ({"country_code": 999}, "not the calling code of a country"),
        ({"country_code": 800}, "not the calling code of a country"),
        ({"local_format": "area"}, "local_format"),
        ({"country_code": 1, "area_code": "21"}, "NANP area codes have 3 digits"),
        ({"country_code": 1, "local_area_codes": ["6460"]}, "NANP area codes have 3 digits"),
        ({"dial_tone": "w"}, "dial_tone"),
    ],
)
def test_invalid_rules_are_refused_with_a_clear_error(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        DialingRules(**{**BASE, **changes})


def test_national_prefix_is_required_but_may_be_empty() -> None:
    with pytest.raises(ValidationError, match="national_prefix"):
        DialingRules(country_code=39, international_prefix="00")
    assert DialingRules(country_code=39, national_prefix="", international_prefix="00")
