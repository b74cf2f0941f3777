"""Fax pages: the list with its filters, one fax (recipients, history, page previews,
actions), sending a fax. Both roles: a tenant sees its own faxes only, an admin every
tenant's, by the API's own rules (``scheduler.api.visible``); every action calls the
function behind the matching API endpoint and shows its refusal as the API words it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from faxfleet.messages import SETTLED_STATES, TERMINAL_STATES, FaxStatus, JobState
from faxfleet.numbers import InvalidNumber, to_e164
from scheduler import api, intake, tasks
from scheduler.console import web
from scheduler.console.web import Session, require_csrf, require_session

router = APIRouter(prefix=web.PREFIX)

SignedIn = Annotated[Session, Depends(require_session)]

PAGE_SIZE = 25
SCAN_LIMIT = 1000
"""Faxes read per listing before the console's own filters (number, dates) apply: the
API's largest ``limit``; the list says when it was reached."""


def caller(session: Session) -> api.Caller:
    """The API's view of the signed-in user: its tenant (None: admin) and key id."""
    return api.Caller(session.tenant, session.key_id)


def settled(fax: FaxStatus) -> bool:
    """Nothing more will happen by itself: the page stops polling."""
    return all(r.state in SETTLED_STATES for r in fax.recipients)


# -- the list -------------------------------------------------------------------------------


@dataclass
class Filters:
    state: str = ""
    site: str = ""
    number: str = ""
    user: str = ""
    tenant: str = ""
    since: str = ""
    until: str = ""
    page: int = 1


def _day(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}: a date as YYYY-MM-DD") from None


def _search(session: Session, f: Filters) -> tuple[list[FaxStatus], bool, bool]:
    """The page of faxes matching ``f``, whether there are more, and whether the scan
    stopped at :data:`SCAN_LIMIT`."""
    state = None
    if f.state:
        try:
            state = JobState(f.state)
        except ValueError:
            raise HTTPException(422, f"state: no state {f.state!r}") from None
    number = None
    if f.number:
        try:
            number = to_e164(f.number, web.settings.default_region)
        except InvalidNumber:
            number = f.number.strip()
    since, until = _day(f.since, "from"), _day(f.until, "to")
    store = tasks.store()
    site, user = f.site or None, f.user or None
    if session.tenant is not None:
        found = store.list(session.tenant, state=state, site=site, user=user, limit=SCAN_LIMIT)
    elif f.tenant:
        found = store.list(f.tenant, state=state, site=site, user=user, limit=SCAN_LIMIT)
    else:
        found = store.list_all(state=state, site=site, user=user, limit=SCAN_LIMIT)
    capped = len(found) >= SCAN_LIMIT
    start = datetime.combine(since, time.min, UTC) if since else None
    end = datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None
    matching = [
        fax
        for fax in found
        if (number is None or any(number in r.number for r in fax.recipients))
        and (start is None or fax.created_at >= start)
        and (end is None or fax.created_at < end)
    ]
    first = (f.page - 1) * PAGE_SIZE
    return matching[first : first + PAGE_SIZE], len(matching) > first + PAGE_SIZE, capped


def _filters(
    state: str = "",
    site: str = "",
    number: str = "",
    user: str = "",
    tenant: str = "",
    since: Annotated[str, Query(alias="from")] = "",
    until: Annotated[str, Query(alias="to")] = "",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> Filters:
    return Filters(state, site, number.strip(), user, tenant, since, until, page)


def _list_context(session: Session, f: Filters) -> dict[str, Any]:
    error = None
    try:
        faxes, more, capped = _search(session, f)
    except HTTPException as exc:
        faxes, more, capped, error = [], False, False, str(exc.detail)
    params = {
        "state": f.state,
        "site": f.site,
        "number": f.number,
        "user": f.user,
        "tenant": f.tenant if session.admin else "",
        "from": f.since,
        "to": f.until,
    }
    base = {k: v for k, v in params.items() if v}
    return {
        "faxes": faxes,
        "filters": f,
        "more": more,
        "capped": capped,
        "error": error,
        "states": [s.value for s in JobState],
        "tenants": sorted(web.settings.keys.tenants),
        "live": any(not settled(fax) for fax in faxes),
        "query": urlencode({**base, "page": f.page}),
        "prev_query": urlencode({**base, "page": f.page - 1}) if f.page > 1 else None,
        "next_query": urlencode({**base, "page": f.page + 1}) if more else None,
    }


@router.get("/faxes")
def fax_list(
    request: Request, session: SignedIn, f: Annotated[Filters, Depends(_filters)]
) -> Response:
    """Search the faxes this user may see; the rows refresh while any is in progress."""
    context = _list_context(session, f)
    return web.render(request, "faxes.html", title="Faxes", **context)


@router.get("/faxes/rows")
def fax_rows(
    request: Request, session: SignedIn, f: Annotated[Filters, Depends(_filters)]
) -> Response:
    """The list's rows alone (htmx polling)."""
    return web.render(request, "_fax_rows.html", **_list_context(session, f))


# -- one fax --------------------------------------------------------------------------------


def _fax_or_404(request: Request, session: Session, job_id: str) -> FaxStatus | Response:
    try:
        return api.visible(job_id, caller(session), history=True)
    except HTTPException as exc:
        return web.render(
            request, "error.html", exc.status_code, title="No such fax", message=exc.detail
        )


def _fax_page(
    request: Request,
    fax: FaxStatus,
    error: str | None = None,
    status_code: int = 200,
    notice: str | None = None,
    fragment: bool = False,
) -> Response:
    """The fax's page, or its state part alone (``fragment``, or when htmx asks)."""
    template = "_fax_state.html" if fragment or web.is_htmx(request) else "fax.html"
    return web.render(
        request,
        template,
        status_code,
        title=fax.id,
        fax=fax,
        live=not settled(fax),
        error=error,
        notice=notice,
        uncertain=any(r.state == JobState.OUTCOME_UNCERTAIN for r in fax.recipients),
        failed=any(r.state in RETRYABLE for r in fax.recipients),
        open=not all(r.state in TERMINAL_STATES for r in fax.recipients),
    )


RETRYABLE = frozenset({JobState.FAILED, JobState.OUTCOME_UNCERTAIN})
NOTICES = {
    "sent": "Fax submitted.",
    "cancelled": "Cancel requested: recipients on a line hang up at the next page.",
    "altered": "Changed.",
    "requeued": "Requeued.",
    "resolved": "Resolved.",
}
"""What the page says after an action (``?done=``)."""


@router.get("/faxes/{job_id}")
def fax_detail(request: Request, session: SignedIn, job_id: str, done: str = "") -> Response:
    """One fax: recipients, history, previews, actions. Its state part (``/state``)
    refreshes every second until the fax is settled."""
    fax = _fax_or_404(request, session, job_id)
    if isinstance(fax, Response):
        return fax
    return _fax_page(request, fax, notice=NOTICES.get(done))


@router.get("/faxes/{job_id}/state")
def fax_state(request: Request, session: SignedIn, job_id: str) -> Response:
    """The fax's state part alone (htmx polling); no polling attribute once settled."""
    fax = _fax_or_404(request, session, job_id)
    if isinstance(fax, Response):
        return fax
    return _fax_page(request, fax, fragment=True)


@router.get("/faxes/{job_id}/pages/{page}.png")
def fax_preview(session: SignedIn, job_id: str, page: int) -> Response:
    """A page as the recipient gets it (PNG), to whoever may see the fax."""
    try:
        png = api.rendered_page(api.visible(job_id, caller(session)), page)
    except HTTPException as exc:
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


def _act(request: Request, session: Session, job_id: str, done: str, action: Any) -> Response:
    """Run ``action`` (an API endpoint's function); on success back to the fax page, on a
    refusal the fax page with the API's reason and status."""
    try:
        action()
    except HTTPException as exc:
        fax = _fax_or_404(request, session, job_id)
        if isinstance(fax, Response):
            return fax
        return _fax_page(request, fax, str(exc.detail), exc.status_code)
    return RedirectResponse(f"{web.PREFIX}/faxes/{job_id}?done={done}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _invalid(exc: ValidationError) -> HTTPException:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return HTTPException(422, f"{where}: {msg}" if where else msg)


def _model(model: Any, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


@router.post("/faxes/{job_id}/cancel", dependencies=[Depends(require_csrf)])
def fax_cancel(request: Request, session: SignedIn, job_id: str) -> Response:
    return _act(
        request, session, job_id, "cancelled", lambda: api.cancel_fax(job_id, caller(session))
    )


@router.post("/faxes/{job_id}/alter", dependencies=[Depends(require_csrf)])
async def fax_alter(request: Request, session: SignedIn, job_id: str) -> Response:
    """Priority and/or ``send_after`` (empty: leave it; ``now``: send now), as ``PATCH``."""
    form = await _form(request)
    data: dict[str, Any] = {}
    if form.get("priority", "").strip():
        value = form["priority"].strip()
        data["priority"] = int(value) if value.isdigit() else value
    send_after = form.get("send_after", "").strip()
    if send_after == "now":
        data["send_after"] = None
    elif send_after:
        data["send_after"] = send_after
    if form.get("note", "").strip():
        data["note"] = form["note"].strip()

    def alter() -> None:
        body = _model(api.AlterRequest, data)
        api.alter_fax(job_id, body, caller(session), Response())

    return await run_in_threadpool(_act, request, session, job_id, "altered", alter)


@router.post("/faxes/{job_id}/retry", dependencies=[Depends(require_csrf)])
async def fax_retry(request: Request, session: SignedIn, job_id: str) -> Response:
    """Requeue a failed or uncertain fax, as ``POST /v1/faxes/{id}/retry``."""
    form = await _form(request)
    data = {"from_start": form.get("from_start") == "true"}

    def retry() -> None:
        api.retry_fax(job_id, caller(session), _model(api.RetryRequest, data))

    return await run_in_threadpool(_act, request, session, job_id, "requeued", retry)


@router.post("/faxes/{job_id}/resolve", dependencies=[Depends(require_csrf)])
async def fax_resolve(request: Request, session: SignedIn, job_id: str) -> Response:
    """Settle an ``outcome_uncertain`` fax (admins), as ``POST /v1/faxes/{id}/resolve``."""
    if not session.admin:
        raise web.Forbidden("resolving an uncertain outcome is for administrators")
    form = await _form(request)
    data: dict[str, Any] = {"outcome": form.get("outcome", "")}
    if form.get("note", "").strip():
        data["note"] = form["note"].strip()

    def resolve() -> None:
        api.resolve_fax(job_id, _model(api.ResolveRequest, data), caller(session))

    return await run_in_threadpool(_act, request, session, job_id, "resolved", resolve)


# -- sending ------------------------------------------------------------------------------


def _send_page(
    request: Request,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return web.render(
        request,
        "send.html",
        status_code,
        title="Send a fax",
        values=values or {"priority": "5"},
        error=error,
        tenants=sorted(web.settings.keys.tenants),
        idempotency_key=f"console-{secrets.token_urlsafe(16)}",
        max_mb=web.settings.max_upload_bytes // (1024 * 1024),
    )


@router.get("/send")
def send_form(request: Request, _: SignedIn) -> Response:
    return _send_page(request)


@router.post("/send")
async def send(request: Request, session: SignedIn) -> Response:
    """The form as ``POST /v1/faxes`` takes it (the same parsing, limits, validation and
    storing): on success to the fax's page, else the form again with the API's reason."""
    values: dict[str, str] = {}
    try:
        form = await api.read_submission(request)
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != web.CSRF_FIELD}
        token = form.get(web.CSRF_FIELD)
        try:
            web.check_csrf(session, token if isinstance(token, str) else None)
        except web.Forbidden:
            await form.close()
            raise
        fax, _new = await api.submit_form(caller(session), form)
    except intake.Rejected as exc:
        return _send_page(request, values, exc.reason, exc.status)
    except HTTPException as exc:
        return _send_page(request, values, str(exc.detail), exc.status_code)
    return RedirectResponse(f"{web.PREFIX}/faxes/{fax.id}?done=sent", status_code=303)
