"""Admin page for cost tables: per site, the current version's rows, the kept versions
(each viewable and downloadable as CSV), uploading a new table, and comparing the
sites' prices for one number.

An upload is imported whole by the routing admin API: a file with any error changes
nothing and the page lists every error with its line number, as the API words them
(``CostErrors.errors``). The comparison asks the admin API's ``/v1/costs/quote`` for each
site's tariff in force at the given time and the cost of a call of the given length.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from scheduler.console import adminapi, web
from scheduler.console.web import Session, require_admin

router = APIRouter(prefix=f"{web.PREFIX}/admin")

Admin = Annotated[Session, Depends(require_admin)]

DEFAULT_SECONDS = 60
"""A typical call for the comparison: one page is about a minute on the line."""


def table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """A cost table's CSV as a header and rows, for display."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    return (rows[0], rows[1:]) if rows else ([], [])


def _context(
    session: Session,
    site: str | None,
    version: int | None,
    number: str,
    at: str,
    seconds: str,
    compare: list[str],
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "site": site,
        "version": version,
        "number": number,
        "at": at,
        "seconds": seconds or str(DEFAULT_SECONDS),
        "compare": compare,
        "sites": [],
        "versions": None,
        "header": [],
        "rows": [],
        "error": None,
        "quote": None,
        "quote_error": None,
    }
    with adminapi.client(session) as admin:
        try:
            found["sites"] = [s for s in admin.sites() if s.get("managed", True)]
        except adminapi.AdminError as exc:
            found["error"] = adminapi.refusal(exc)[0]
            return found
        if site is None and found["sites"]:
            site = found["site"] = found["sites"][0]["name"]
        if site is not None:
            try:
                found["versions"] = admin.cost_versions(site)
                if found["versions"]["current"] is not None:
                    text = admin.export_costs(site, version)
                    found["header"], found["rows"] = table_rows(text)
                    found["version"] = version or found["versions"]["current"]
            except adminapi.AdminError as exc:
                found["error"] = adminapi.refusal(exc)[0]
        if number.strip():
            try:
                length = float(seconds) if seconds.strip() else DEFAULT_SECONDS
            except ValueError:
                found["quote_error"] = f"seconds: {seconds!r} is not a number of seconds"
                return found
            try:
                found["quote"] = admin.quote(
                    number.strip(), at=at.strip() or None, seconds=length, sites=compare or None
                )
            except adminapi.AdminError as exc:
                found["quote_error"] = adminapi.refusal(exc)[0]
    return found


@router.get("/costs")
def costs_page(
    request: Request,
    session: Admin,
    site: str | None = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    number: Annotated[str, Query(max_length=40)] = "",
    at: Annotated[str, Query(max_length=40)] = "",
    seconds: Annotated[str, Query(max_length=12)] = "",
    compare: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """A site's cost table (``site``, ``version``) and, with ``number``, the comparison
    of the ``compare`` sites' prices (every site when none is ticked)."""
    context = _context(session, site or None, version, number, at, seconds, compare or [])
    done = request.query_params.get("done")
    notice = None
    if done == "imported" and context["versions"]:
        notice = f"Imported version {context['versions']['current']} of {context['site']}."
    return web.render(
        request,
        "admin/costs.html",
        title="Cost tables",
        notice=notice,
        upload_error=None,
        upload_errors=[],
        **context,
    )


@router.get("/costs/{site}/download")
def download(
    session: Admin, site: str, version: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    """The site's cost table (current, or ``version``) as a CSV file."""
    try:
        with adminapi.client(session) as admin:
            text = admin.export_costs(site, version)
    except adminapi.AdminError as exc:
        status = exc.status if 400 <= exc.status < 500 else 502
        return Response(adminapi.refusal(exc)[0], status_code=status, media_type="text/plain")
    name = f"{site}-costs-v{version}.csv" if version else f"{site}-costs.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/costs/{site}/upload")
async def upload(request: Request, session: Admin, site: str) -> Response:
    """Import the uploaded CSV as the site's next version; on refusal the page shows
    every error, line-numbered, and nothing changed."""
    limit = web.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=10) as form:
        token = form.get(web.CSRF_FIELD)
        web.check_csrf(session, token if isinstance(token, str) else None)
        upload_file = form.get("file")
        data = b""
        if isinstance(upload_file, UploadFile):
            data = await upload_file.read(limit + 1)
    problem = None
    if not data:
        problem = "choose a CSV file to upload (the file was empty or missing)"
    elif len(data) > limit:
        problem = f"the file is larger than {limit:,} bytes"
    errors: list[str] = []
    if problem is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            text, problem = "", f"the file is not UTF-8 text ({exc})"
    if problem is None:

        def send() -> dict[str, Any]:
            with adminapi.client(session) as admin:
                return admin.import_costs(site, text)

        try:
            await run_in_threadpool(send)
        except adminapi.AdminError as exc:
            problem, errors = adminapi.refusal(exc)
        else:
            query = urlencode({"site": site, "done": "imported"})
            return RedirectResponse(f"{web.PREFIX}/admin/costs?{query}", status_code=303)
    context = await run_in_threadpool(_context, session, site, None, "", "", "", [])
    return web.render(
        request,
        "admin/costs.html",
        status_code=422,
        title="Cost tables",
        notice=None,
        upload_error=problem,
        upload_errors=errors,
        **context,
    )
