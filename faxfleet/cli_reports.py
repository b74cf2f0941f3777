"""``faxfleet report``: cost reports and call records, through the API.

Dates are checked here first (the same rules as the API: ISO dates or date-times with a
zone, ``--from`` inclusive, ``--to`` exclusive) so a typo gets a usage error before any
request. The table rounds costs to each currency's minor unit; ``--csv`` is exact.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from faxfleet import billing, reports
from faxfleet.client import FaxClient, FaxError
from faxfleet.settings import get_settings

console = Console()


def _client(ctx: click.Context, admin: bool) -> FaxClient:
    obj = ctx.find_root().obj or {}
    key = (obj.get("admin_key") or get_settings().admin_key) if admin else None
    return FaxClient(obj.get("urls"), key or obj.get("api_key"))


def _range(start: str | None, end: str | None) -> None:
    try:
        first = reports.parse_when(start, "--from") if start else None
        last = reports.parse_when(end, "--to") if end else None
        reports.check("site", first, last)
    except reports.ReportError as exc:
        raise click.BadParameter(
            str(exc).replace("from (", "--from (").replace("to (", "--to (")
        ) from None


RANGE_OPTIONS = [
    click.option("--from", "start", help="Calls started at or after: 2030-01-08 or ISO time+zone."),
    click.option("--to", "end", help="Calls started before (exclusive)."),
    click.option("--tenant", help="One tenant's calls (with the admin key)."),
    click.option("--admin", is_flag=True, help="Act with the admin key (every tenant)."),
    click.option("--csv", "as_csv", is_flag=True, help="Write CSV to standard output."),
]


def _range_options(f):
    for option in reversed(RANGE_OPTIONS):
        f = option(f)
    return f


@click.group()
def report() -> None:
    """Cost reports and call records (docs/accounting.md)."""


@report.command()
@click.option(
    "--by",
    type=click.Choice(reports.GROUPINGS),
    default="site",
    show_default=True,
    help="Group calls by site, tenant, destination (country) or day.",
)
@_range_options
@click.pass_context
def costs(
    ctx: click.Context,
    by: str,
    start: str | None,
    end: str | None,
    tenant: str | None,
    admin: bool,
    as_csv: bool,
) -> None:
    """Calls, connected calls, minutes, pages and cost per currency."""
    _range(start, end)
    with _client(ctx, admin or tenant is not None) as client:
        try:
            if as_csv:
                sys.stdout.write(client.cost_report_csv(by, start=start, end=end, tenant=tenant))
                return
            got = client.cost_report(by, start=start, end=end, tenant=tenant)
        except FaxError as exc:
            raise click.ClickException(f"{exc.status}: {exc.reason}") from None
    head, *rows = reports.table(got)
    scope = f"tenant {got.tenant}" if got.tenant else "all tenants"
    span = f"{got.start:%Y-%m-%d %H:%M} .." if got.start else "..."
    span += f" {got.end:%Y-%m-%d %H:%M} UTC" if got.end else ""
    table = Table(title=f"call costs by {by} ({scope}, {span.strip()})")
    for i, name in enumerate(head):
        table.add_column(name, justify="left" if i == 0 else "right")
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=i == len(rows) - 2)
    console.print(table)


@report.command()
@_range_options
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Records in the table (--csv writes them all).",
)
@click.pass_context
def calls(
    ctx: click.Context,
    start: str | None,
    end: str | None,
    tenant: str | None,
    admin: bool,
    as_csv: bool,
    limit: int,
) -> None:
    """The call records themselves (``--csv``: every column, exact)."""
    _range(start, end)
    with _client(ctx, admin or tenant is not None) as client:
        try:
            if as_csv:
                sys.stdout.write(client.calls_csv(start=start, end=end, tenant=tenant))
                return
            records = client.calls(start=start, end=end, tenant=tenant, limit=limit)
        except FaxError as exc:
            raise click.ClickException(f"{exc.status}: {exc.reason}") from None
    table = Table(title="calls")
    for name in (
        "started (UTC)",
        "call",
        "site",
        "line",
        "number",
        "seconds",
        "pages",
        "outcome",
        "cost",
    ):
        table.add_column(name)
    for rec in records:
        cost = (
            ""
            if rec.cost is None or rec.currency is None
            else (f"{billing.display(rec.cost, rec.currency)} {rec.currency}")
        )
        table.add_row(
            f"{rec.started_at:%Y-%m-%d %H:%M:%S}",
            rec.call_id,
            rec.site,
            rec.line or "",
            rec.number,
            str(rec.duration_seconds),
            str(rec.pages_sent),
            rec.outcome,
            cost,
        )
    console.print(table)
