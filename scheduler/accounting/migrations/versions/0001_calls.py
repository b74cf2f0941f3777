"""The calls table: one row per call a site placed.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.Text, primary_key=True),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("recipient", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("line", sa.Text),
        sa.Column("number", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Numeric(14, 3), nullable=False),
        sa.Column("pages_sent", sa.Integer, nullable=False),
        sa.Column("pages_confirmed", sa.Integer, nullable=False),
        sa.Column("pages_total", sa.Integer),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("cause", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("cost", sa.Numeric(20, 6)),
        sa.Column("currency", sa.String(3)),
        sa.Column("billed_seconds", sa.Integer),
        sa.Column("tariff", JSONB),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("user_name", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("route_reason", sa.Text),
        sa.Column("home_site", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("journal_id", sa.Text, nullable=False),
    )
    op.create_index("calls_started_at", "calls", ["started_at"])
    op.create_index("calls_tenant_started_at", "calls", ["tenant", "started_at"])


def downgrade() -> None:
    op.drop_table("calls")
