"""Sites and groups as an administrator declares them, stored in Redis.

Rules:

* A site has a unique name, an address (how its peers and operators reach it), a call
  zone (country and area code), dialing rules, a number of lines and a time zone. The
  dialing rules' country code is the calling code of the site's country (derived from
  it when left out).
* A site belongs to at most one group. Sites of a group route to one another; a
  standalone site (no group) routes only to itself.
* Sites that publish their state but were never declared are *unmanaged*: they form the
  implicit group ``default`` and have no cost table, so a fleet runs with no
  administration at all (every live site can take every fax; load decides).
* Every change bumps ``ff:rt:config-version``, so routing processes reload their cached
  view at once instead of waiting for their refresh interval. Line counts are also
  written to the shared key the site worker reads (``faxfleet.keys.site_lines``), so
  adding lines to a running site takes effect without a restart.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from faxfleet import keys
from routing.dialing import DialingRules

SITES = "ff:rt:sites"  # hash: name -> SiteConfig JSON
GROUPS = "ff:rt:groups"  # hash: name -> GroupConfig JSON
CONFIG_VERSION = "ff:rt:config-version"
DEFAULT_GROUP = "default"

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{kind} name {value!r}: use 1-32 lower-case letters, digits and '-', "
            "starting with a letter"
        )
    return value


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    address: str = ""
    """Where the site is reached (host:port or URL); informational for peers and admins."""
    country: str = Field(min_length=2, max_length=2)
    """ISO 3166 region of the site's call zone, e.g. "FR"."""
    dialing: DialingRules
    lines: int = Field(ge=0, le=1000)
    timezone: str = "UTC"
    group: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _country_code_from_country(cls, data: Any) -> Any:
        """``dialing.country_code`` may be left out: it is the calling code of
        ``country`` (33 for FR, 1 for US)."""
        if isinstance(data, dict) and isinstance(data.get("dialing"), dict):
            dialing = data["dialing"]
            country = data.get("country")
            if "country_code" not in dialing and isinstance(country, str):
                code = phonenumbers.country_code_for_region(country.upper())
                if code:
                    data = {**data, "dialing": {**dialing, "country_code": code}}
        return data

    @model_validator(mode="after")
    def _country_matches_dialing(self) -> SiteConfig:
        code = phonenumbers.country_code_for_region(self.country)
        if not code:
            raise ValueError(f"country {self.country!r} is not an ISO 3166 region code")
        if code != self.dialing.country_code:
            raise ValueError(
                f"dialing.country_code {self.dialing.country_code} is not the calling code "
                f"of country {self.country} ({code})"
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name("site", value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError(f"country {value!r} is not an ISO 3166 region code")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value == DEFAULT_GROUP:
            raise ValueError(f"{DEFAULT_GROUP!r} is the implicit group of unmanaged sites")
        return _check_name("group", value)


class RegistryError(Exception):
    """An administrative change that cannot be made; ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Registry:
    """Site and group configuration in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    # -- reading ------------------------------------------------------------------------

    def sites(self) -> dict[str, SiteConfig]:
        return {
            k.decode(): SiteConfig.model_validate_json(v) for k, v in self.r.hgetall(SITES).items()
        }

    def site(self, name: str) -> SiteConfig | None:
        raw = self.r.hget(SITES, name)
        return SiteConfig.model_validate_json(raw) if raw else None

    def groups(self) -> dict[str, GroupConfig]:
        return {
            k.decode(): GroupConfig.model_validate_json(v)
            for k, v in self.r.hgetall(GROUPS).items()
        }

    def version(self) -> int:
        return int(self.r.get(CONFIG_VERSION) or 0)

    # -- changing -----------------------------------------------------------------------

    def _bump(self, pipe: redis.client.Pipeline) -> None:
        pipe.incr(CONFIG_VERSION)

    def put_site(self, site: SiteConfig, *, create: bool) -> SiteConfig:
        exists = self.r.hexists(SITES, site.name)
        if create and exists:
            raise RegistryError(f"site {site.name!r} already exists")
        if not create and not exists:
            raise RegistryError(f"no site {site.name!r}", 404)
        if site.group is not None and not self.r.hexists(GROUPS, site.group):
            raise RegistryError(f"no group {site.group!r}: create it first", 422)
        with self.r.pipeline() as pipe:
            pipe.hset(SITES, site.name, site.model_dump_json())
            pipe.set(keys.site_lines(site.name), site.lines)
            self._bump(pipe)
            pipe.execute()
        return site

    def remove_site(self, name: str) -> None:
        if not self.r.hexists(SITES, name):
            raise RegistryError(f"no site {name!r}", 404)
        with self.r.pipeline() as pipe:
            pipe.hdel(SITES, name)
            pipe.delete(keys.site_lines(name))
            self._bump(pipe)
            pipe.execute()

    def put_group(self, group: GroupConfig, *, create: bool) -> GroupConfig:
        exists = self.r.hexists(GROUPS, group.name)
        if create and exists:
            raise RegistryError(f"group {group.name!r} already exists")
        if not create and not exists:
            raise RegistryError(f"no group {group.name!r}", 404)
        with self.r.pipeline() as pipe:
            pipe.hset(GROUPS, group.name, group.model_dump_json())
            self._bump(pipe)
            pipe.execute()
        return group

    def remove_group(self, name: str) -> None:
        if not self.r.hexists(GROUPS, name):
            raise RegistryError(f"no group {name!r}", 404)
        members = sorted(s.name for s in self.sites().values() if s.group == name)
        if members:
            raise RegistryError(f"group {name!r} still has sites: {', '.join(members)}")
        with self.r.pipeline() as pipe:
            pipe.hdel(GROUPS, name)
            self._bump(pipe)
            pipe.execute()

    def set_membership(self, site_name: str, group: str | None) -> SiteConfig:
        site = self.site(site_name)
        if site is None:
            raise RegistryError(f"no site {site_name!r}", 404)
        return self.put_site(site.model_copy(update={"group": group}), create=False)


def group_of(site: str, configs: dict[str, SiteConfig]) -> str | None:
    """The routing group of a site: its group, None when standalone, ``default`` when
    the site was never declared."""
    config = configs.get(site)
    if config is None:
        return DEFAULT_GROUP
    return config.group
