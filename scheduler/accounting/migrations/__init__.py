"""Alembic migrations of the call records' schema (run by ``db.upgrade``)."""
