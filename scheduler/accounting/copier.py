"""Moves call records from the Redis journal to PostgreSQL, and trims the journal.

Runs in a thread of every timer loop (``scheduler/timers.py``): several copiers share
the journal's consumer group (``keys.ACCT_GROUP``), so each record is read by one of
them. Faults, and why nothing is lost or doubled:

* a record is acknowledged (``XACK``) only after the transaction that inserted it has
  committed; a copier that dies in between leaves it pending, and another copier takes
  it over once it has been idle ``acct_claim_idle_seconds`` (``XAUTOCLAIM``);
* a record inserted twice (taken over after the insert committed, before the ack) is
  skipped by ``ON CONFLICT (call_id) DO NOTHING``;
* PostgreSQL down: the insert fails, nothing is acknowledged, records wait in the
  journal (retried from this copier's own pending entries first), the backlog is
  reported (``faxfleet_acct_backlog``, ``keys.ACCT_COPIED``, ``/v1/fleet``);
* the journal is trimmed only below the oldest record not yet acknowledged, and only
  records older than ``acct_keep_copied_seconds``. Without a database there is no
  copier, and the journal keeps ``acct_retention_days`` of records.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import redis
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from faxfleet import keys, metrics
from faxfleet.accounting import CallRecord
from faxfleet.log import get_logger
from faxfleet.settings import Settings
from scheduler.accounting import db

log = get_logger("faxfleet.accounting")


def ensure_group(r: redis.Redis) -> None:
    """The copiers' consumer group, reading the journal from its start."""
    try:
        r.xgroup_create(keys.ACCT_CALLS, keys.ACCT_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def backlog(r: redis.Redis) -> int:
    """Records not yet copied: read but not acknowledged, plus not yet read."""
    try:
        groups = r.xinfo_groups(keys.ACCT_CALLS)
    except redis.ResponseError:
        return 0  # no journal yet
    for group in groups:
        name = group["name"]
        if (name.decode() if isinstance(name, bytes) else name) == keys.ACCT_GROUP:
            lag = group.get("lag")
            if lag is None:  # Redis could not tell (entries deleted): count them
                last = group["last-delivered-id"]
                lag = len(r.xrange(keys.ACCT_CALLS, f"({_text(last)}", "+"))
            return int(group["pending"]) + int(lag)
    return int(r.xlen(keys.ACCT_CALLS))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Copier:
    """One consumer of the journal's group (named after its host and process)."""

    def __init__(self, r: redis.Redis, settings: Settings, engine: Engine | None = None) -> None:
        if not settings.database_url and engine is None:
            raise ValueError("a copier needs FAXFLEET_DATABASE_URL")
        self.r = r
        self.s = settings
        self._engine = engine
        self.migrated = False
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            assert self.s.database_url
            self._engine = db.make_engine(self.s.database_url)
        return self._engine

    # -- copying ------------------------------------------------------------------------

    def _read(self) -> list[tuple[str, dict[bytes, bytes] | None]]:
        """This copier's own unacknowledged records first, then others' abandoned ones,
        then new ones (a record trimmed meanwhile comes back without fields)."""
        batch = self.s.acct_copy_batch
        group, key = keys.ACCT_GROUP, keys.ACCT_CALLS
        mine = self.r.xreadgroup(group, self.name, {key: "0"}, count=batch)
        entries = list(mine[0][1]) if mine else []
        if len(entries) < batch:
            idle = int(self.s.acct_claim_idle_seconds * 1000)
            claimed = self.r.xautoclaim(key, group, self.name, idle, "0-0", count=batch)
            entries += list(claimed[1])
        if len(entries) < batch:
            new = self.r.xreadgroup(group, self.name, {key: ">"}, count=batch - len(entries))
            entries += list(new[0][1]) if new else []
        return [(_text(i), f or None) for i, f in entries]

    def copy_once(self) -> int:
        """Copy one batch; returns how many records were acknowledged. Raises
        ``SQLAlchemyError`` when PostgreSQL cannot take them (nothing acknowledged)."""
        ensure_group(self.r)
        if not self.migrated:
            db.upgrade(self.engine)
            self.migrated = True
        entries = self._read()
        if not entries:
            return 0
        rows: dict[str, dict[str, Any]] = {}
        for entry_id, fields in entries:
            try:
                rec = CallRecord.model_validate_json(fields[b"r"]) if fields else None
            except (KeyError, ValidationError) as exc:
                # Never copyable: acknowledged so it does not block the others; it stays
                # in the journal (until trimmed) for whoever looks into it.
                log.error(
                    "unreadable call record left in the journal",
                    entry=entry_id,
                    error=str(exc)[:300],
                )
                continue
            if rec is not None:
                rows.setdefault(rec.call_id, db.row(rec, entry_id))
        if rows:
            with self.engine.begin() as connection:
                connection.execute(db.insert_ignoring_copies(list(rows.values())))
        self.r.xack(keys.ACCT_CALLS, keys.ACCT_GROUP, *(i for i, _ in entries))
        return len(entries)

    def copy(self) -> int:
        """Copy until the journal is drained (or PostgreSQL fails: logged, reported)."""
        total = 0
        try:
            while (n := self.copy_once()) > 0:
                total += n
        except SQLAlchemyError as exc:
            self._report(total, error=str(exc).splitlines()[0][:300])
            log.warning("call records not copied: database unavailable", error=str(exc)[:300])
            return total
        self._report(total)
        if total:
            log.info("call records copied", copied=total)
        return total

    def _report(self, copied: int, error: str | None = None) -> None:
        waiting = backlog(self.r)
        metrics.ACCT_BACKLOG.set(waiting)
        if copied:
            metrics.ACCT_COPIED.inc(copied)
        self.r.hset(
            keys.ACCT_COPIED,
            mapping={"at": time.time(), "backlog": waiting, "error": error or ""},
        )

    # -- trimming -----------------------------------------------------------------------

    def trim(self, now: float | None = None) -> int:
        """Drop copied records older than ``acct_keep_copied_seconds``; returns how many."""
        ensure_group(self.r)
        self._forget_idle_consumers()
        keep = (int(((now or time.time()) - self.s.acct_keep_copied_seconds) * 1000), 0)
        floor = copied_below(self.r)
        ms, seq = min(keep, floor) if floor is not None else keep
        return int(self.r.xtrim(keys.ACCT_CALLS, minid=f"{max(ms, 0)}-{seq}", approximate=False))

    def _forget_idle_consumers(self, idle_seconds: float = 86400) -> None:
        """Drop consumers (copiers of processes long gone) that hold no record."""
        for consumer in self.r.xinfo_consumers(keys.ACCT_CALLS, keys.ACCT_GROUP):
            name = _text(consumer["name"])
            idle = int(consumer["idle"]) > idle_seconds * 1000
            if name != self.name and not consumer["pending"] and idle:
                self.r.xgroup_delconsumer(keys.ACCT_CALLS, keys.ACCT_GROUP, name)


def copied_below(r: redis.Redis) -> tuple[int, int] | None:
    """A journal id below which every record has been copied: the oldest unacknowledged
    record's, or just past the last one read (None: no group)."""
    info = None
    for group in r.xinfo_groups(keys.ACCT_CALLS):
        if _text(group["name"]) == keys.ACCT_GROUP:
            info = group
    if info is None:
        return None
    pending = r.xpending(keys.ACCT_CALLS, keys.ACCT_GROUP)
    if pending["pending"]:
        return _id(_text(pending["min"]))
    ms, seq = _id(_text(info["last-delivered-id"]))
    return ms, seq + 1


def trim_by_age(r: redis.Redis, settings: Settings, now: float | None = None) -> int:
    """Without a database: drop records older than ``acct_retention_days``."""
    cutoff = int(((now or time.time()) - settings.acct_retention_days * 86400) * 1000)
    return int(r.xtrim(keys.ACCT_CALLS, minid=f"{max(cutoff, 0)}-0", approximate=False))


def run(r: redis.Redis, settings: Settings, stop: threading.Event) -> None:
    """The timer loop's accounting thread: copy (with a database) and trim, every
    ``acct_copy_interval_seconds``, until ``stop``."""
    copier = Copier(r, settings) if settings.database_url else None
    while not stop.is_set():
        try:
            if copier is not None:
                copier.copy()
                copier.trim()
            else:
                trim_by_age(r, settings)
        except Exception:  # a Redis blip: try again next round
            log.exception("call journal round failed")
        stop.wait(settings.acct_copy_interval_seconds)
