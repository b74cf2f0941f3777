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
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import redis

from routing.costs import CostTable, parse_csv, table_from_json, table_to_json, to_csv
from routing.sites import CONFIG_VERSION

KEEP_VERSIONS = 20


def table_key(site: str) -> str:
    """Hash: version (as text) -> the table's JSON."""
    return f"ff:rt:costs:{site}"


def current_key(site: str) -> str:
    """The version routers use."""
    return f"ff:rt:costs:{site}:current"


def meta_key(site: str) -> str:
    """Hash: version -> JSON {imported_at, rows, currency}."""
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

    def current(self, site: str) -> CostTable | None:
        """The table routers use, or None when the site has none."""
        version = self.version(site)
        if not version:
            return None
        raw = self.r.hget(table_key(site), str(version))
        return table_from_json(raw) if raw else None

    def get(self, site: str, version: int | None = None) -> CostTable:
        """One version (default: the current one); :class:`UnknownVersion` if not kept."""
        wanted = self.version(site) if version is None else version
        raw = self.r.hget(table_key(site), str(wanted)) if wanted else None
        if raw is None:
            if version is None:
                raise UnknownVersion(f"site {site!r} has no cost table")
            raise UnknownVersion(f"site {site!r} has no cost table version {version}")
        return table_from_json(raw)

    def export_csv(self, site: str, version: int | None = None) -> str:
        """A version (default: current) as CSV, in the form :meth:`import_csv` reads."""
        return to_csv(self.get(site, version))

    # -- changing -----------------------------------------------------------------------

    def import_csv(self, site: str, text: str, timezone: str) -> CostTable:
        """Check ``text`` and make it the site's new current table (version n+1).

        Raises :class:`~routing.costs.CostTableError` (nothing written) when the file
        has errors."""
        table = parse_csv(text, site=site, timezone=timezone, version=self._highest(site) + 1)
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
                    return table
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
                    return table_from_json(raw)
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
