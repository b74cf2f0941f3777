"""Versioned cost tables in Redis, shared by every routing process.

Rules:

* An import is all or nothing. The CSV is parsed and checked first
  (:func:`routing.costs.parse_csv`); a file with any error raises
  :class:`~routing.costs.CostTableError` (every error, line-numbered) and writes nothing.
* A good file becomes version n+1 of the site's table (n is the highest version kept)
  and the current one, in one Redis transaction: hash ``ff:rt:costs:{site}`` field
  ``str(version)`` -> table JSON (:func:`routing.costs.table_to_json`), string
  ``ff:rt:costs:{site}:current`` -> version, and ``ff:rt:config-version`` incremented so
  routers reload at once. Two concurrent imports get two different versions (optimistic
  locking with WATCH).
* Each version also has a small record in ``ff:rt:costs:{site}:meta`` (when it was
  imported, how many rows, the currency) for listings.
* At most :data:`KEEP_VERSIONS` versions are kept per site: the oldest go first, never the
  current one.
* :meth:`CostStore.rollback` makes a kept older version current again (it stays that
  version number; the next import still gets n+1).
* Bands are evaluated in the site's **current** time zone (its ``SiteConfig.timezone``):
  every table this store hands out (:meth:`CostStore.current`, :meth:`CostStore.get`,
  and what :meth:`CostStore.import_csv` and :meth:`CostStore.rollback` return) is in
  that zone, so changing a site's zone moves its bands at once, without a new import.
  The zone stored with a version (JSON ``timezone``, and ``timezone_at_import`` in its
  record) is the one it was imported in, kept for the record only. A site that is not
  declared (any more) keeps the stored zone.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import redis

from routing.costs import CostTable, parse_csv, table_from_json, table_to_json, to_csv
from routing.sites import CONFIG_VERSION, Registry

KEEP_VERSIONS = 20


def table_key(site: str) -> str:
    """Hash: version (as text) -> the table's JSON."""
    return f"ff:rt:costs:{site}"


def current_key(site: str) -> str:
    """The version routers use."""
    return f"ff:rt:costs:{site}:current"


def meta_key(site: str) -> str:
    """Hash: version -> JSON {imported_at, rows, currency, timezone_at_import}."""
    return f"ff:rt:costs:{site}:meta"


class UnknownVersion(LookupError):
    """The site has no cost table, or not that version (any more)."""


class CostStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    # -- reading ------------------------------------------------------------------------

    def version(self, site: str) -> int:
        """The current version, 0 when the site has no cost table."""
        return int(self.r.get(current_key(site)) or 0)

    def versions(self, site: str) -> list[int]:
        """The kept versions, oldest first."""
        return sorted(int(v) for v in self.r.hkeys(table_key(site)))

    def info(self, site: str) -> list[dict[str, Any]]:
        """The kept versions with their import records, oldest first."""
        records = self.r.hgetall(meta_key(site))
        out = []
        for version in self.versions(site):
            raw = records.get(str(version).encode())
            meta = json.loads(raw) if raw else {}
            out.append({"version": version, **meta})
        return out

    def site_timezone(self, site: str) -> str | None:
        """The site's current time zone from its configuration (None: not declared)."""
        config = Registry(self.r).site(site)
        return config.timezone if config is not None else None

    def _in_zone(self, table: CostTable, timezone: str | None) -> CostTable:
        """``table`` evaluated in ``timezone``, by default the site's current zone."""
        zone = timezone if timezone is not None else self.site_timezone(table.site)
        return table if zone is None else table.in_timezone(zone)

    def current(self, site: str, timezone: str | None = None) -> CostTable | None:
        """The table routers use, or None when the site has none.

        Its bands are evaluated in ``timezone``, by default the site's current time zone
        (read from its configuration; the stored zone if the site is not declared).
        Callers that hold the site's configuration pass its ``timezone``."""
        version = self.version(site)
        if not version:
            return None
        raw = self.r.hget(table_key(site), str(version))
        return self._in_zone(table_from_json(raw), timezone) if raw else None

    def get(self, site: str, version: int | None = None, timezone: str | None = None) -> CostTable:
        """One version (default: the current one), in ``timezone`` as :meth:`current`;
        :class:`UnknownVersion` if not kept."""
        wanted = self.version(site) if version is None else version
        raw = self.r.hget(table_key(site), str(wanted)) if wanted else None
        if raw is None:
            if version is None:
                raise UnknownVersion(f"site {site!r} has no cost table")
            raise UnknownVersion(f"site {site!r} has no cost table version {version}")
        return self._in_zone(table_from_json(raw), timezone)

    def export_csv(self, site: str, version: int | None = None) -> str:
        """A version (default: current) as CSV, in the form :meth:`import_csv` reads."""
        return to_csv(self.get(site, version))

    # -- changing -----------------------------------------------------------------------

    def import_csv(self, site: str, text: str, timezone: str | None = None) -> CostTable:
        """Check ``text`` and make it the site's new current table (version n+1).

        ``timezone`` is recorded as the zone at import (default: the site's current
        zone, or UTC for a site not declared); the table returned is evaluated in the
        site's current zone, like :meth:`current`. Raises
        :class:`~routing.costs.CostTableError` (nothing written) when the file has
        errors."""
        zone_now = self.site_timezone(site)
        recorded = timezone if timezone is not None else zone_now or "UTC"
        table = parse_csv(text, site=site, timezone=recorded, version=self._highest(site) + 1)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(table_key(site), current_key(site))
                    kept = sorted(int(v) for v in pipe.hkeys(table_key(site)))
                    version = (kept[-1] if kept else 0) + 1
                    if table.version != version:  # another import got there first
                        table = dataclasses.replace(table, version=version)
                    drop = kept[: max(0, len(kept) + 1 - KEEP_VERSIONS)]
                    meta = {
                        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "rows": len(table.tariffs),
                        "currency": table.currency,
                        "timezone_at_import": table.timezone,
                    }
                    pipe.multi()
                    pipe.hset(table_key(site), str(version), table_to_json(table))
                    pipe.hset(meta_key(site), str(version), json.dumps(meta))
                    pipe.set(current_key(site), version)
                    if drop:
                        pipe.hdel(table_key(site), *map(str, drop))
                        pipe.hdel(meta_key(site), *map(str, drop))
                    pipe.incr(CONFIG_VERSION)
                    pipe.execute()
                    return table if zone_now is None else table.in_timezone(zone_now)
                except redis.WatchError:
                    continue

    def rollback(self, site: str, version: int) -> CostTable:
        """Make a kept ``version`` current again; :class:`UnknownVersion` if not kept."""
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(table_key(site))
                    raw = pipe.hget(table_key(site), str(version))
                    if raw is None:
                        raise UnknownVersion(f"site {site!r} has no cost table version {version}")
                    pipe.multi()
                    pipe.set(current_key(site), version)
                    pipe.incr(CONFIG_VERSION)
                    pipe.execute()
                    return self._in_zone(table_from_json(raw), None)
                except redis.WatchError:
                    continue

    def drop(self, site: str) -> None:
        """Forget every version of the site's table (the site was removed)."""
        with self.r.pipeline() as pipe:
            pipe.delete(table_key(site), current_key(site), meta_key(site))
            pipe.incr(CONFIG_VERSION)
            pipe.execute()

    def _highest(self, site: str) -> int:
        versions = self.versions(site)
        return versions[-1] if versions else 0
