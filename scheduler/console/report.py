"""The costs report page: calls, minutes, pages and cost of a date range, grouped by
site, tenant, destination or day, with a chart of each and CSV downloads.

Both roles: an admin sees every tenant (or one), a tenant its own calls only, by the
rules of ``GET /v1/reports/costs`` (``scheduler.reports_api.cost_report``, which this
page calls). Call records come from PostgreSQL when configured, else from the Redis
call journal (docs/accounting.md).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from faxfleet import billing, reports
from faxfleet.reports import CostReport
from scheduler import api, reports_api
from scheduler.console import charts, web
from scheduler.console.faxes import caller
from scheduler.console.web import Session, require_session

router = APIRouter(prefix=web.PREFIX)

SignedIn = Annotated[Session, Depends(require_session)]

DEFAULT_DAYS = 30
"""The range shown when none is asked for: the last 30 days, today included."""


def _range(since: str, until: str) -> tuple[str, str]:
    """The form's dates, or the default range; ``until`` is shown inclusive, as people
    read a date range, and sent exclusive (the next day) as the report wants."""
    today = datetime.now(UTC).date()
    return (
        since or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        until or today.isoformat(),
    )


def _exclusive(until: str) -> str:
    try:
        return (date.fromisoformat(until) + timedelta(days=1)).isoformat()
    except ValueError:
        return until  # the report names the field and what is wrong


def _chart_points(report: CostReport, currency: str) -> list[tuple[str, Decimal, str]]:
    return [
        (
            row.key,
            row.cost.get(currency, Decimal(0)),
            billing.display(row.cost.get(currency, Decimal(0)), currency),
        )
        for row in report.rows
    ]


def _charts(by_group: CostReport, by_day: CostReport | None) -> list[tuple[str, Markup]]:
    """One bar chart per currency of the grouping, and one column chart per currency of
    the days (when grouped by something else than the day). The charts escape every
    text they draw, so their SVG goes into the page as it is."""
    out = []
    for currency in reports.currencies(by_group):
        title = f"Cost by {by_group.by} ({currency})"
        draw = charts.columns if by_group.by == "day" else charts.bars
        out.append((title, Markup(draw(_chart_points(by_group, currency), title=title))))
    if by_day is not None:
        for currency in reports.currencies(by_day):
            title = f"Cost per day ({currency})"
            out.append(
                (title, Markup(charts.columns(_chart_points(by_day, currency), title=title)))
            )
    return out


@router.get("/report")
async def report_page(
    request: Request,
    session: SignedIn,
    by: str = "site",
    since: Annotated[str, Query(alias="from")] = "",
    until: Annotated[str, Query(alias="to")] = "",
    tenant: str = "",
) -> Response:
    since, until = _range(since, until)
    who = caller(session)
    tenant_filter = (tenant or None) if session.admin else None
    query = {"by": by, "from": since, "to": until, **({"tenant": tenant} if tenant_filter else {})}
    context = {
        "by": by,
        "since": since,
        "until": until,
        "tenant": tenant,
        "groupings": reports.GROUPINGS,
    }
    try:
        grouped = await run_in_threadpool(
            reports_api.cost_report,
            who,
            by,
            since,
            _exclusive(until),
            tenant_filter,
            api.call_source,
        )
        daily = None
        if by != "day":
            daily = await run_in_threadpool(
                reports_api.cost_report,
                who,
                "day",
                since,
                _exclusive(until),
                tenant_filter,
                api.call_source,
            )
    except HTTPException as exc:
        return web.render(
            request,
            "report.html",
            exc.status_code,
            title="Costs report",
            error=exc.detail,
            **context,
        )
    return web.render(
        request,
        "report.html",
        title="Costs report",
        report=grouped,
        table=reports.table(grouped),
        charts=_charts(grouped, daily),
        csv_query=urlencode(query),
        **context,
    )


@router.get("/report/costs.csv")
async def report_csv(
    session: SignedIn,
    by: str = "site",
    since: Annotated[str, Query(alias="from")] = "",
    until: Annotated[str, Query(alias="to")] = "",
    tenant: str = "",
) -> Response:
    """The report as CSV (exact costs, one line per group and currency)."""
    since, until = _range(since, until)
    tenant_filter = (tenant or None) if session.admin else None
    report = await run_in_threadpool(
        reports_api.cost_report,
        caller(session),
        by,
        since,
        _exclusive(until),
        tenant_filter,
        api.call_source,
    )
    name = f"faxfleet-costs-by-{by}-{since}-{until}.csv"
    return Response(
        reports.costs_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/report/calls.csv")
def calls_csv(
    session: SignedIn,
    since: Annotated[str, Query(alias="from")] = "",
    until: Annotated[str, Query(alias="to")] = "",
    tenant: str = "",
) -> Response:
    """Every call record of the range as CSV."""
    since, until = _range(since, until)
    tenant_filter = (tenant or None) if session.admin else None
    response = reports_api.calls_csv_response(
        caller(session), since, _exclusive(until), tenant_filter, api.call_source
    )
    response.headers["Content-Disposition"] = (
        f'attachment; filename="faxfleet-calls-{since}-{until}.csv"'
    )
    return response
