"""Where reports read call records from: PostgreSQL when configured, else the journal.

Both answer two questions: ``calls(start, end, tenant)`` (the records of calls started in
[start, end), of one tenant or all) and ``cost_report(by, start, end, tenant)``. The
journal groups in Python (``faxfleet.reports.aggregate``); PostgreSQL groups in SQL
(``scheduler/accounting/sql_report.py``) and returns a row per group and currency
instead of every record. Both give the same report, to the
last decimal (``tests/test_report_equivalence.py``). With a database, records not yet
copied (PostgreSQL was down) are not in reports until the copier catches up:
``/v1/fleet`` shows the backlog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

import redis
from pydantic import ValidationError
from sqlalchemy import Engine, select

from faxfleet import keys, reports
from faxfleet.accounting import CallRecord
from faxfleet.reports import CostReport
from faxfleet.settings import Settings
from scheduler.accounting import db, sql_report

SLACK = timedelta(days=1)
"""A record enters the journal when its call ends: a call started at ``t`` is journalled
after ``t`` and, being shorter than this, before ``t + SLACK``."""


class CallSource(Protocol):
    def calls(
        self, start: datetime | None, end: datetime | None, tenant: str | None
    ) -> Iterator[CallRecord]: ...

    def cost_report(
        self, by: str, start: datetime | None, end: datetime | None, tenant: str | None
    ) -> CostReport: ...


class JournalCalls:
    """Records read from the Redis journal (its ids are journalling times)."""

    def __init__(self, r: redis.Redis, page: int = 1000) -> None:
        self.r = r
        self.page = page

    def calls(
        self, start: datetime | None, end: datetime | None, tenant: str | None
    ) -> Iterator[CallRecord]:
        for rec in self._read(start, end):
            if start is not None and rec.started_at < start:
                continue
            if end is not None and rec.started_at >= end:
                continue
            if tenant is not None and rec.tenant != tenant:
                continue
            yield rec

    def cost_report(
        self, by: str, start: datetime | None, end: datetime | None, tenant: str | None
    ) -> CostReport:
        """Grouped in Python: Redis has no GROUP BY, every record of the range is read."""
        return reports.aggregate(
            self.calls(start, end, tenant), by, start=start, end=end, tenant=tenant
        )

    def _read(self, start: datetime | None, end: datetime | None) -> Iterator[CallRecord]:
        """The journal's records that may have started in [start, end)."""
        low = "-" if start is None else f"{int((start.timestamp()) * 1000)}-0"
        high = "+" if end is None else f"{int((end + SLACK).timestamp() * 1000)}-0"
        while True:
            entries = self.r.xrange(keys.ACCT_CALLS, low, high, count=self.page)
            for _, fields in entries:
                try:
                    yield CallRecord.model_validate_json(fields[b"r"])
                except (KeyError, ValidationError):
                    continue  # unreadable: the copier logged it; a report skips it
            if len(entries) < self.page:
                return
            last = entries[-1][0].decode()
            low = f"({last}"


class DatabaseCalls:
    """Records read from PostgreSQL, streamed in start order."""

    def __init__(self, engine: Engine | Callable[[], Engine]) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine if isinstance(self._engine, Engine) else self._engine()

    def calls(
        self, start: datetime | None, end: datetime | None, tenant: str | None
    ) -> Iterator[CallRecord]:
        query = select(db.calls).order_by(db.calls.c.started_at, db.calls.c.call_id)
        if start is not None:
            query = query.where(db.calls.c.started_at >= start)
        if end is not None:
            query = query.where(db.calls.c.started_at < end)
        if tenant is not None:
            query = query.where(db.calls.c.tenant == tenant)
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=1000).execute(query)
            for row in result:
                yield db.record(row)

    def cost_report(
        self, by: str, start: datetime | None, end: datetime | None, tenant: str | None
    ) -> CostReport:
        """Grouped by PostgreSQL: one row per group and currency comes back."""
        return sql_report.cost_report(self.engine, by, start, end, tenant)


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    return db.make_engine(url)


_upgraded: set[str] = set()


def _ready(url: str) -> Engine:
    """The engine, its schema brought up to date once per process (before any copier
    has run, the table may not exist yet: a report then is empty, not an error)."""
    engine = _engine(url)
    if url not in _upgraded:
        db.upgrade(engine)
        _upgraded.add(url)
    return engine


def source(settings: Settings, r: redis.Redis) -> CallSource:
    """The store reports read (PostgreSQL when ``database_url`` is set)."""
    if settings.database_url:
        url = settings.database_url
        return DatabaseCalls(lambda: _ready(url))
    return JournalCalls(r)
