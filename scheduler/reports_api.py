"""Cost reports and call records over HTTP (part of the public API).

``GET /v1/reports/costs`` (JSON, ``by=site|tenant|destination|day``), ``/costs.csv``,
``/calls`` (JSON) and ``/calls.csv``, each with ``from`` (inclusive), ``to`` (exclusive)
and ``tenant``. An admin key sees every tenant (``tenant`` filters); a tenant key only
its own (asking for another is a 403). Records come from PostgreSQL when configured,
else from the Redis call journal (``scheduler/accounting/stores.py``); PostgreSQL groups
them itself (``GROUP BY``), the journal's are grouped by the pure
``faxfleet.reports.aggregate``: the same report either way.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.

from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.exc import SQLAlchemyError

from faxfleet import reports
from faxfleet.accounting import CallRecord
from faxfleet.reports import CostReport, ReportError
from scheduler.accounting.stores import CallSource

FROM = Query(None, alias="from", description="ISO date or date-time with zone, inclusive")
TO = Query(None, alias="to", description="ISO date or date-time with zone, exclusive")
TENANT = Query(None, description="admin keys: one tenant's calls only")


def scope(
    caller: Any, start: str | None, end: str | None, tenant: str | None
) -> tuple[datetime | None, datetime | None, str | None]:
    """The range and tenant a caller may report on (a tenant key: its own only), or the
    HTTP error saying why not."""
    if caller.tenant is not None:
        if tenant not in (None, caller.tenant):
            raise HTTPException(403, "a tenant key reports on its own calls only")
        tenant = caller.tenant
    try:
        first = reports.parse_when(start, "from") if start else None
        last = reports.parse_when(end, "to") if end else None
        reports.check("site", first, last)
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None
    return first, last, tenant


def cost_report(
    caller: Any,
    by: str,
    start: str | None,
    end: str | None,
    tenant: str | None,
    source: Callable[[], CallSource],
) -> CostReport:
    """The cost report as ``GET /v1/reports/costs`` gives it (shared with the web
    console's report page), or the HTTP error saying why not."""
    if by not in reports.GROUPINGS:
        raise HTTPException(422, f"by {by!r} is not one of {', '.join(reports.GROUPINGS)}")
    first, last, tenant = scope(caller, start, end, tenant)
    try:
        return source().cost_report(by, first, last, tenant)
    except SQLAlchemyError as exc:
        raise HTTPException(503, "the call records database is unavailable") from exc


def calls_csv_response(
    caller: Any,
    start: str | None,
    end: str | None,
    tenant: str | None,
    source: Callable[[], CallSource],
) -> StreamingResponse:
    """Every call record of the range as CSV, streamed (a dead database is a 503 before
    the first byte, not a cut-off file)."""
    first, last, tenant = scope(caller, start, end, tenant)
    try:
        records = source().calls(first, last, tenant)
        head = next(records, None)
    except SQLAlchemyError as exc:
        raise HTTPException(503, "the call records database is unavailable") from exc

    def lines() -> Iterator[str]:
        yield reports.calls_csv_header()
        if head is not None:
            yield from reports.calls_csv_lines([head])
            yield from reports.calls_csv_lines(records)

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8")


def router(caller_of: Callable[..., Any], source: Callable[[], CallSource]) -> APIRouter:
    """The routes, with the API's key check and the record store handed in."""
    api = APIRouter(prefix="/v1/reports", tags=["reports"])
    CallerDep = Annotated[Any, Depends(caller_of)]

    def _report(
        caller: Any, by: str, start: str | None, end: str | None, tenant: str | None
    ) -> CostReport:
        return cost_report(caller, by, start, end, tenant, source)

    @api.get("/costs", response_model=CostReport)
    def costs(
        caller: CallerDep,
        by: str = Query("site", description="site, tenant, destination or day"),
        start: str | None = FROM,
        end: str | None = TO,
        tenant: str | None = TENANT,
    ) -> CostReport:
        """Calls, connected calls, minutes, pages and cost per currency, grouped ``by``
        (``day``: one row per UTC day of the range, for charts)."""
        return _report(caller, by, start, end, tenant)

    @api.get("/costs.csv", response_class=Response)
    def costs_csv(
        caller: CallerDep,
        by: str = Query("site"),
        start: str | None = FROM,
        end: str | None = TO,
        tenant: str | None = TENANT,
    ) -> Response:
        """The cost report as CSV: one line per group and currency, exact costs."""
        report = _report(caller, by, start, end, tenant)
        return Response(reports.costs_csv(report), media_type="text/csv; charset=utf-8")

    @api.get("/calls", response_model=list[CallRecord])
    def calls(
        caller: CallerDep,
        start: str | None = FROM,
        end: str | None = TO,
        tenant: str | None = TENANT,
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> list[CallRecord]:
        """The call records themselves, oldest first (at most ``limit``)."""
        first, last, tenant = scope(caller, start, end, tenant)
        try:
            return list(islice(source().calls(first, last, tenant), limit))
        except SQLAlchemyError as exc:
            raise HTTPException(503, "the call records database is unavailable") from exc

    @api.get("/calls.csv", response_class=StreamingResponse)
    def calls_csv(
        caller: CallerDep,
        start: str | None = FROM,
        end: str | None = TO,
        tenant: str | None = TENANT,
    ) -> StreamingResponse:
        """Every call record of the range as CSV (streamed)."""
        return calls_csv_response(caller, start, end, tenant, source)

    return api
