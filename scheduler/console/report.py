"""The costs report page: calls, minutes, pages and cost of a date range, grouped by
site, tenant, destination or day, with a chart of each and CSV downloads.

Both roles: an admin sees every tenant (or one), a tenant its own calls only, by the
rules of ``GET /v1/reports/costs`` (``scheduler.reports_api.cost_report``, which this
page calls). Call records come from PostgreSQL when configured, else from the Redis
call journal (docs/accounting.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
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


@dataclass(frozen=True)
class ReportQuery:
    """What the report page and its downloads are asked for, defaults filled in: the
    range is shown with ``until`` inclusive, as people read a date range, and asked of
    the report exclusive (the next day); a tenant's own calls only, whatever it asks."""

    caller: Any
    by: str
    since: str
    until: str
    tenant: str
    tenant_filter: str | None

    @property
    def end(self) -> str:
        try:
            return (date.fromisoformat(self.until) + timedelta(days=1)).isoformat()
        except ValueError:
            return self.until  # the report names the field and what is wrong

    def report(self, by: str | None = None) -> CostReport:
        return reports_api.cost_report(
            self.caller, by or self.by, self.since, self.end, self.tenant_filter, api.call_source
        )

    def urlencoded(self) -> str:
        query = {"by": self.by, "from": self.since, "to": self.until}
        return urlencode({**query, **({"tenant": self.tenant} if self.tenant_filter else {})})


def report_query(
    session: SignedIn,
    by: str = "site",
    since: Annotated[str, Query(alias="from")] = "",
    until: Annotated[str, Query(alias="to")] = "",
    tenant: str = "",
) -> ReportQuery:
    today = datetime.now(UTC).date()
    return ReportQuery(
        caller=caller(session),
        by=by,
        since=since or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        until=until or today.isoformat(),
        tenant=tenant,
        tenant_filter=(tenant or None) if session.admin else None,
    )


Asked = Annotated[ReportQuery, Depends(report_query)]


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
async def report_page(request: Request, q: Asked) -> Response:
    context = {
        "by": q.by,
        "since": q.since,
        "until": q.until,
        "tenant": q.tenant,
        "groupings": reports.GROUPINGS,
    }
    try:
        grouped = await run_in_threadpool(q.report)
        daily = await run_in_threadpool(q.report, "day") if q.by != "day" else None
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
        csv_query=q.urlencoded(),
        **context,
    )


@router.get("/report/costs.csv")
async def report_csv(q: Asked) -> Response:
    """The report as CSV (exact costs, one line per group and currency)."""
    report = await run_in_threadpool(q.report)
    name = f"faxfleet-costs-by-{q.by}-{q.since}-{q.until}.csv"
    return Response(
        reports.costs_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/report/calls.csv")
def calls_csv(q: Asked) -> Response:
    """Every call record of the range as CSV."""
    response = reports_api.calls_csv_response(
        q.caller, q.since, q.end, q.tenant_filter, api.call_source
    )
    name = f"faxfleet-calls-{q.since}-{q.until}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
