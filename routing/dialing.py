"""How a site turns an E.164 number into the string its modem dials.

Pure: the only input is the number and the site's ``DialingRules``; nothing is read from
Redis or the network. The rules, in order:

1. Input. The number must be strict E.164 (``+`` then 1 to 15 digits, no spaces) and a
   valid number of its numbering plan (``phonenumbers.is_valid_number``), as the API
   already requires at submission. Anything else raises ``ValueError`` saying why.
2. Area code of the number. NANP (country code 1): the national significant number (NSN)
   has 10 digits and the area code is its first 3. Elsewhere: the first
   ``phonenumbers.length_of_geographical_area_code`` digits of the NSN; a length of 0
   (mobiles, freephone, non-geographic numbers) means the number has no area code, and
   such a number is never a local call.
3. Zone. Same country code as the site and an area code in the site's local set (its own
   ``area_code`` plus ``local_area_codes``) -> ``LOCAL``; same country code ->
   ``NATIONAL``; any other country code -> ``INTERNATIONAL``. For NANP "same country"
   means the whole +1 zone (a New York site dials Toronto as a national call), as the
   NANP itself does.
4. Digits.
   - ``LOCAL``: with ``local_format="subscriber"`` only the subscriber number (the NSN
     without its area code, e.g. 7-digit US dialling); with ``local_format="national"``
     the full national number, ``national_prefix + NSN`` (as France requires).
   - ``NATIONAL``: ``national_prefix + NSN``.
   - ``INTERNATIONAL``: ``international_prefix + country code + NSN``.
   The NSN keeps a leading zero where the plan has one (Italy: ``+39 06...`` is dialled
   ``0039 06...`` abroad and ``06...`` at home, with an empty ``national_prefix``).
5. Outside line. ``outside_prefix`` (a PBX's "9" or "0") is prepended to every dial
   string, whatever the zone.

``DialingRules`` is validated when built: every prefix and area code is digits only
(``national_prefix``, ``outside_prefix`` and ``area_code`` may be empty,
``international_prefix`` may not), the country code must be a geographic calling code
known to ``phonenumbers``, and NANP area codes have exactly 3 digits.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

__all__ = ["CallZone", "DialingRules", "dial_string", "zone"]

_NANP = 1
_E164 = re.compile(r"\+[1-9][0-9]{0,14}")
_DIGITS = re.compile(r"[0-9]+")


class CallZone(StrEnum):
    LOCAL = "local"
    NATIONAL = "national"
    INTERNATIONAL = "international"


def _digits(value: str, what: str, *, allow_empty: bool) -> str:
    if value == "" and allow_empty:
        return value
    if not _DIGITS.fullmatch(value):
        kind = "digits only" if allow_empty else "one or more digits"
        raise ValueError(f"{what} must be {kind}, got {value!r}")
    return value


class DialingRules(BaseModel):
    """How one site dials: its country, its area, its PBX and its trunk prefixes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    country_code: int
    area_code: str = ""
    outside_prefix: str = ""
    national_prefix: str
    international_prefix: str
    local_area_codes: list[str] = []
    local_format: Literal["subscriber", "national"] = "national"

    @field_validator("country_code")
    @classmethod
    def _known_country_code(cls, value: int) -> int:
        region = phonenumbers.region_code_for_country_code(value)
        if region in ("ZZ", "001"):
            raise ValueError(
                f"country_code {value} is not the calling code of a country "
                "(e.g. 33 for France, 1 for the NANP)"
            )
        return value

    @field_validator("area_code", "outside_prefix", "national_prefix")
    @classmethod
    def _optional_digits(cls, value: str, info: ValidationInfo) -> str:
        return _digits(value, str(info.field_name), allow_empty=True)

    @field_validator("international_prefix")
    @classmethod
    def _required_digits(cls, value: str) -> str:
        return _digits(value, "international_prefix", allow_empty=False)

    @field_validator("local_area_codes")
    @classmethod
    def _area_codes(cls, value: list[str]) -> list[str]:
        for i, code in enumerate(value):
            _digits(code, f"local_area_codes[{i}]", allow_empty=False)
        return value

    @model_validator(mode="after")
    def _nanp_area_codes(self) -> DialingRules:
        if self.country_code == _NANP:
            codes = ([self.area_code] if self.area_code else []) + self.local_area_codes
            for code in codes:
                if len(code) != 3:
                    raise ValueError(f"NANP area codes have 3 digits, got {code!r}")
        return self

    def local_set(self) -> frozenset[str]:
        """The area codes dialled as local calls: the site's own plus the listed ones."""
        own = {self.area_code} if self.area_code else set()
        return frozenset(own | set(self.local_area_codes))


def _parse(e164: str) -> phonenumbers.PhoneNumber:
    if not isinstance(e164, str):
        raise ValueError(f"the number must be an E.164 string, got {type(e164).__name__}")
    if not _E164.fullmatch(e164):
        raise ValueError(
            f"{e164!r} is not an E.164 number ('+' then up to 15 digits, no spaces, "
            "not starting with 0)"
        )
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{e164!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{e164!r} is not a valid number in its numbering plan")
    return number


def _area_code(number: phonenumbers.PhoneNumber, nsn: str) -> str:
    """The number's area code, or "" when it has none (never local)."""
    if number.country_code == _NANP:
        return nsn[:3]
    length = phonenumbers.length_of_geographical_area_code(number)
    return nsn[:length] if length > 0 else ""


def _classify(e164: str, rules: DialingRules) -> tuple[CallZone, int, str, str]:
    number = _parse(e164)
    nsn = phonenumbers.national_significant_number(number)
    if number.country_code != rules.country_code:
        return CallZone.INTERNATIONAL, number.country_code, nsn, ""
    area = _area_code(number, nsn)
    if area and area in rules.local_set():
        return CallZone.LOCAL, number.country_code, nsn, area
    return CallZone.NATIONAL, number.country_code, nsn, area


def zone(e164: str, rules: DialingRules) -> CallZone:
    """Whether ``e164`` is a local, national or international call from this site."""
    return _classify(e164, rules)[0]


def dial_string(e164: str, rules: DialingRules) -> str:
    """The digits this site's modem dials to reach ``e164`` (outside prefix included)."""
    call_zone, country_code, nsn, area = _classify(e164, rules)
    if call_zone is CallZone.LOCAL and rules.local_format == "subscriber":
        digits = nsn[len(area) :]
    elif call_zone is CallZone.INTERNATIONAL:
        digits = f"{rules.international_prefix}{country_code}{nsn}"
    else:
        digits = rules.national_prefix + nsn
    return rules.outside_prefix + digits
