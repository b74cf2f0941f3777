"""The call records' PostgreSQL table (SQLAlchemy Core), its engine and its migrations.

The schema is owned by Alembic (``migrations/``, shipped in the package): a copier
upgrades the database to the newest revision before it first writes, holding a
PostgreSQL advisory lock so several timer loops starting together migrate once. An
operator can run the same upgrade by hand: ``python -m scheduler.accounting.db upgrade``.

Money is ``numeric`` (exact), times ``timestamptz``; ``call_id`` is the primary key, so
copying a record twice inserts it once (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, insert

from faxfleet.accounting import CallRecord

MIGRATIONS = Path(__file__).parent / "migrations"
logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin otherwise
_LOCK = 7_274_401
"""The advisory lock id migrations run under."""

metadata = MetaData()
calls = Table(
    "calls",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("job_id", Text, nullable=False),
    Column("recipient", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("site", Text, nullable=False),
    Column("line", Text),
    Column("number", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("duration_seconds", Numeric(14, 3), nullable=False),
    Column("pages_sent", Integer, nullable=False),
    Column("pages_confirmed", Integer, nullable=False),
    Column("pages_total", Integer),
    Column("ok", Boolean, nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("cause", Text),
    Column("outcome", Text, nullable=False),
    Column("cost", Numeric(20, 6)),
    Column("currency", String(3)),
    Column("billed_seconds", Integer),
    Column("tariff", JSONB),
    Column("tenant", Text, nullable=False),
    Column("user_name", Text),
    Column("priority", Integer, nullable=False),
    Column("route_reason", Text),
    Column("home_site", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("journal_id", Text, nullable=False),
)


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs use psycopg 3."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def make_engine(url: str, connect_timeout: int = 3) -> Engine:
    """An engine that notices a dead server quickly (a copier waits, it does not hang)."""
    return create_engine(
        normalise_url(url),
        pool_pre_ping=True,
        pool_size=2,
        connect_args={"connect_timeout": connect_timeout},
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent; one migrator at a time)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def row(record: CallRecord, journal_id: str) -> dict[str, Any]:
    """The table row of a record."""
    data = record.model_dump(mode="python", exclude={"user", "tariff"})
    data["user_name"] = record.user
    data["tariff"] = None if record.tariff is None else record.tariff.model_dump()
    data["journal_id"] = journal_id
    return data


def record(values: Any) -> CallRecord:
    """A record back from a table row."""
    data = dict(values._mapping)
    data["user"] = data.pop("user_name")
    data.pop("journal_id", None)
    return CallRecord.model_validate(data)


def insert_ignoring_copies(rows: list[dict[str, Any]]) -> Any:
    """One INSERT of ``rows`` that skips a record already stored."""
    return insert(calls).values(rows).on_conflict_do_nothing(index_elements=["call_id"])


def main(argv: list[str] | None = None) -> None:
    """``python -m scheduler.accounting.db upgrade`` (``FAXFLEET_DATABASE_URL``)."""
    from faxfleet.settings import get_settings

    args = sys.argv[1:] if argv is None else argv
    url = get_settings().database_url
    if args != ["upgrade"] or not url:
        raise SystemExit(
            "usage: FAXFLEET_DATABASE_URL=... python -m scheduler.accounting.db upgrade"
        )
    upgrade(make_engine(url))
    print("call records schema is up to date")


if __name__ == "__main__":
    main()
