"""Which numbers a tenant may fax: barred number types and regions, fleet-wide and per tenant.

A fax line dials whatever it is given, and some numbers cost far more than a fax is worth
or pay part of the call to whoever rents them: premium-rate (+33 89x, +44 90x, +1 900),
shared-cost, personal and pager numbers, satellite and international networks. Toll fraud
sends pages to such numbers with a stolen or hostile tenant key. So every destination is
classified with libphonenumber's metadata (its type and its region) and checked against:

* the fleet's policy, from the settings (``FAXFLEET_DESTINATION_BARRED_TYPES``,
  ``FAXFLEET_DESTINATION_ALLOWED_REGIONS``, ``FAXFLEET_DESTINATION_BARRED_REGIONS``,
  ``FAXFLEET_DAILY_PAGE_QUOTA``);
* the tenant's policy (:class:`TenantPolicy`, set by an administrator): stricter (more
  barred types or regions, fewer allowed regions) or granting a type or region the fleet
  bars, and its own daily page quota.

Pure: E.164 numbers and policies in, a decision out; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import PhoneNumberType
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from faxfleet.settings import Settings

NUMBER_TYPES: dict[str, int] = {
    "fixed_line": PhoneNumberType.FIXED_LINE,
    "mobile": PhoneNumberType.MOBILE,
    "fixed_line_or_mobile": PhoneNumberType.FIXED_LINE_OR_MOBILE,
    "toll_free": PhoneNumberType.TOLL_FREE,
    "premium_rate": PhoneNumberType.PREMIUM_RATE,
    "shared_cost": PhoneNumberType.SHARED_COST,
    "voip": PhoneNumberType.VOIP,
    "personal_number": PhoneNumberType.PERSONAL_NUMBER,
    "pager": PhoneNumberType.PAGER,
    "uan": PhoneNumberType.UAN,
    "voicemail": PhoneNumberType.VOICEMAIL,
    "unknown": PhoneNumberType.UNKNOWN,
}
"""libphonenumber's number types by the names the settings and tenant policies use."""

_TYPE_NAMES = {value: name for name, value in NUMBER_TYPES.items()}

TYPE_WORDS: dict[str, str] = {
    "fixed_line": "fixed-line",
    "mobile": "mobile",
    "fixed_line_or_mobile": "fixed-line or mobile",
    "toll_free": "toll-free",
    "premium_rate": "premium-rate",
    "shared_cost": "shared-cost",
    "voip": "VoIP",
    "personal_number": "personal",
    "pager": "pager",
    "uan": "universal access (UAN)",
    "voicemail": "voicemail access",
    "unknown": "unclassified",
}

DEFAULT_BARRED_TYPES = "premium_rate,shared_cost,personal_number,pager,voicemail"
"""Barred out of the box: numbers that pay their holder part of the call (premium rate,
shared cost: +33 81x/82x/89x, +44 84x/87x/9xx, +1 900, +49 137/180; personal and pager
numbers: +44 70/76, +49 700, +1 500) and voicemail access, which no fax machine answers.
Mobile, VoIP (+33 9x), toll-free and UAN (+44 3x) numbers stay allowed: businesses
receive faxes on them."""

NON_GEOGRAPHIC = "001"
"""libphonenumber's region for numbers of no country: +800/+808 (international freephone),
+870 (Inmarsat), +881 (satellite), +882/+883 (international networks), +979 (international
premium rate)."""

DEFAULT_BARRED_REGIONS = NON_GEOGRAPHIC
"""Barred out of the box: satellite and international network numbers cost several euros
a minute and are the favourite of international revenue-share fraud."""

REGIONS: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS) | {NON_GEOGRAPHIC}

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def valid_tenant(name: str) -> bool:
    """A tenant name fit for a Redis key and a URL path (letters, digits, ``_.-``)."""
    return bool(_TENANT.match(name))


# -- parsing lists ---------------------------------------------------------------------------


def _words(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def parse_types(value: str | Iterable[str], where: str) -> frozenset[str]:
    """Number type names (case-insensitive); an unknown name is an error naming ``where``,
    never ignored: a typo must not leave premium-rate numbers open."""
    names = {w.lower() for w in _words(value)}
    unknown = sorted(names - NUMBER_TYPES.keys())
    if unknown:
        raise ValueError(
            f"{where}: unknown number type(s) {', '.join(unknown)}; "
            f"known: {', '.join(NUMBER_TYPES)}"
        )
    return frozenset(names)


def parse_regions(value: str | Iterable[str], where: str) -> frozenset[str]:
    """ISO 3166 region codes (``FR``, ``GB``) or ``001`` (non-geographic numbers)."""
    codes = {w.upper() for w in _words(value)}
    unknown = sorted(codes - REGIONS)
    if unknown:
        raise ValueError(
            f"{where}: unknown region code(s) {', '.join(unknown)} "
            "(ISO 3166 codes such as FR or GB, or 001 for non-geographic numbers)"
        )
    return frozenset(codes)


# -- policies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetPolicy:
    """The fleet-wide rules (from the settings)."""

    barred_types: frozenset[str] = parse_types(DEFAULT_BARRED_TYPES, "default")
    allowed_regions: frozenset[str] = frozenset()
    """Empty: every region."""
    barred_regions: frozenset[str] = frozenset({NON_GEOGRAPHIC})
    daily_pages: int | None = None
    """Pages a tenant may submit per UTC day (recipients times pages); None: no limit."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FleetPolicy:
        """From the ``destination_*`` and ``daily_page_quota`` settings."""
        return cls(
            barred_types=parse_types(
                settings.destination_barred_types, "FAXFLEET_DESTINATION_BARRED_TYPES"
            ),
            allowed_regions=parse_regions(
                settings.destination_allowed_regions, "FAXFLEET_DESTINATION_ALLOWED_REGIONS"
            ),
            barred_regions=parse_regions(
                settings.destination_barred_regions, "FAXFLEET_DESTINATION_BARRED_REGIONS"
            ),
            daily_pages=settings.daily_page_quota,
        )


class TenantPolicy(BaseModel):
    """One tenant's rules on top of the fleet's, set by an administrator.

    Stricter: ``bar_types``, ``bar_regions``, ``allowed_regions`` (the tenant may dial only
    these). Granting: ``allow_types`` and ``allow_regions`` lift the fleet's bar on those
    types and regions for this tenant only. ``daily_pages`` replaces the fleet's quota
    (higher or lower); None keeps the fleet's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bar_types: list[str] = Field(default_factory=list, max_length=len(NUMBER_TYPES))
    allow_types: list[str] = Field(default_factory=list, max_length=len(NUMBER_TYPES))
    allowed_regions: list[str] = Field(default_factory=list, max_length=300)
    bar_regions: list[str] = Field(default_factory=list, max_length=300)
    allow_regions: list[str] = Field(default_factory=list, max_length=300)
    daily_pages: int | None = Field(None, ge=0, le=10_000_000)
    note: str | None = Field(None, max_length=500)
    """Why (for the administrators)."""

    @field_validator("bar_types", "allow_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return sorted(parse_types(value, "number types"))

    @field_validator("allowed_regions", "bar_regions", "allow_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        return sorted(parse_regions(value, "regions"))

    @model_validator(mode="after")
    def _no_contradiction(self) -> TenantPolicy:
        both = sorted(set(self.bar_types) & set(self.allow_types))
        if both:
            raise ValueError(f"types both barred and allowed: {', '.join(both)}")
        both = sorted(set(self.bar_regions) & (set(self.allow_regions) | set(self.allowed_regions)))
        if both:
            raise ValueError(f"regions both barred and allowed: {', '.join(both)}")
        return self


@dataclass(frozen=True)
class Rules:
    """The fleet's policy with one tenant's on top: what :func:`check` applies."""

    tenant: str
    fleet: FleetPolicy
    own: TenantPolicy

    @property
    def barred_types(self) -> frozenset[str]:
        return (self.fleet.barred_types - set(self.own.allow_types)) | set(self.own.bar_types)

    @property
    def daily_pages(self) -> int | None:
        return self.own.daily_pages if self.own.daily_pages is not None else self.fleet.daily_pages

    def summary(self) -> dict[str, object]:
        """The effective rules, for the admin API."""
        return {
            "barred_types": sorted(self.barred_types),
            "allowed_regions": sorted(self.fleet.allowed_regions),
            "barred_regions": sorted(self.fleet.barred_regions),
            "tenant_allowed_regions": list(self.own.allowed_regions),
            "tenant_bar_regions": list(self.own.bar_regions),
            "tenant_allow_regions": list(self.own.allow_regions),
            "daily_pages": self.daily_pages,
        }


# -- numbers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    number: str
    """E.164."""
    type: str
    """A key of :data:`NUMBER_TYPES`."""
    region: str
    """ISO 3166 code, ``001`` for non-geographic numbers, ``ZZ`` if libphonenumber has none."""

    def describe(self) -> str:
        """``+33899123456 (premium-rate, FR)``."""
        return f"{self.number} ({TYPE_WORDS[self.type]}, {self.region})"


def classify(e164: str) -> Destination:
    """The type and region of a number already normalised to E.164."""
    parsed = phonenumbers.parse(e164, None)
    kind = _TYPE_NAMES.get(phonenumbers.number_type(parsed), "unknown")
    region = phonenumbers.region_code_for_number(parsed) or "ZZ"
    return Destination(e164, kind, region)


@dataclass(frozen=True)
class Refusal:
    """Why a destination may not be dialled."""

    destination: Destination
    rule: str
    """The setting or tenant policy field that bars it (``FAXFLEET_DESTINATION_BARRED_TYPES``,
    ``tenant policy bar_types``...)."""
    reason: str
    """A sentence naming the number, its type and region, and the rule."""


def _fleet_setting(kind: str) -> str:
    return f"FAXFLEET_DESTINATION_{kind.upper()}"


def check(destination: Destination, rules: Rules) -> Refusal | None:
    """Whether ``rules`` let the tenant dial ``destination`` (None) or why not."""
    d, own, fleet = destination, rules.own, rules.fleet
    about = d.describe()
    words = TYPE_WORDS[d.type]
    tenant = f"tenant {rules.tenant}"

    def refused(rule: str, why: str) -> Refusal:
        return Refusal(d, rule, f"{about}: {why} ({rule})")

    if d.type in own.bar_types:
        return refused("tenant policy bar_types", f"{words} numbers are barred for {tenant}")
    if d.type in fleet.barred_types and d.type not in own.allow_types:
        return refused(_fleet_setting("barred_types"), f"{words} numbers are barred by the fleet")
    if d.region in own.bar_regions:
        return refused("tenant policy bar_regions", f"region {d.region} is barred for {tenant}")
    if own.allowed_regions and d.region not in own.allowed_regions:
        return refused(
            "tenant policy allowed_regions",
            f"{tenant} may fax only to {', '.join(own.allowed_regions)}",
        )
    if d.region in own.allow_regions:
        return None
    if d.region in fleet.barred_regions:
        what = "non-geographic numbers" if d.region == NON_GEOGRAPHIC else f"region {d.region}"
        return refused(_fleet_setting("barred_regions"), f"{what} are barred by the fleet")
    if fleet.allowed_regions and d.region not in fleet.allowed_regions:
        return refused(
            _fleet_setting("allowed_regions"),
            f"the fleet faxes only to {', '.join(sorted(fleet.allowed_regions))}",
        )
    return None


def check_all(numbers: Sequence[str], rules: Rules) -> list[tuple[int, Refusal]]:
    """Every refused destination of a submission, with its index in ``to``."""
    found = []
    for index, number in enumerate(numbers):
        refusal = check(classify(number), rules)
        if refusal is not None:
            found.append((index, refusal))
    return found


# -- daily page quota ------------------------------------------------------------------------


def pages_at_least(recipients: int, documents: int, cover: bool) -> int:
    """What a fax costs the quota before it is rendered: every document makes at least one
    page, and every recipient gets every page. Charged at intake; the rest is charged once
    rendering has counted the pages."""
    return recipients * (documents + (1 if cover else 0))


def quota_reason(tenant: str, limit: int, used: int, wanted: int, *, at_least: bool) -> str:
    """Why a fax does not fit the tenant's quota, with the quota and what is used."""
    need = f"at least {wanted}" if at_least else str(wanted)
    return (
        f"daily page quota of tenant {tenant} exceeded: {used} of {limit} pages used today "
        f"(UTC), this fax needs {need} (pages times recipients)"
    )
