"""Fax pages: the list with its filters, one fax (recipients, history, page previews,
actions), sending a fax. Both roles: a tenant sees its own faxes only, an admin every
tenant's, by the API's own rules (``scheduler.api.visible``); every action calls the
function behind the matching API endpoint and shows its refusal as the API words it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from faxfleet.messages import SETTLED_STATES, FaxStatus, JobState
from faxfleet.numbers import InvalidNumber, to_e164
from scheduler import api, tasks
from scheduler.console import web
from scheduler.console.web import Session, require_session

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
