"""What every console page uses: sessions, the CSRF check, role checks and ``render``.

A page module makes an :class:`fastapi.APIRouter`, declares its routes with the
dependencies below and is added to :data:`PAGES` in ``scheduler/console/__init__.py``::

    from fastapi import APIRouter, Depends, Request
    from scheduler.console.web import Session, render, require_admin, require_csrf

    router = APIRouter(prefix="/console/admin")

    @router.get("/overview")
    def overview(request: Request, session: Session = Depends(require_admin)):
        return render(request, "admin/overview.html", title="Overview", sites=...)

    @router.post("/sites/{name}/pause", dependencies=[Depends(require_csrf)])
    def pause(request: Request, name: str, session: Session = Depends(require_admin)): ...

- :func:`require_session`: any signed-in user (admin or tenant). Without a session a
  browser is sent to the sign-in page; an htmx request gets a 401 with ``HX-Redirect``.
- :func:`require_admin`: a signed-in admin; a tenant gets a 403 page.
- :func:`require_csrf`: every state-changing request (POST), from the form field
  ``csrf`` or the ``X-CSRF-Token`` header (``base.html`` sets it on every htmx request).
  A handler that reads a multipart body itself calls :func:`check_csrf` instead.
- :func:`render`: a template of ``templates/`` with ``session``, ``csrf``, ``nav`` and
  ``htmx`` (whether htmx asked: render a fragment) in its context.

Sessions are JSON in Redis under ``ff:console:session:<token>`` (:func:`keys.console_session`)
with a sliding TTL (``FAXFLEET_CONSOLE_SESSION_SECONDS``), so every API node accepts them
and signing out ends them everywhere. The cookie holds only the random token, never the
API key; a session whose key is no longer configured is over.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import escape

from faxfleet import billing, keys
from faxfleet.credentials import StoredKey
from faxfleet.settings import get_settings
from scheduler import tasks

PREFIX = "/console"
COOKIE = "ff_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"

settings = get_settings()
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["money"] = lambda amount, currency: billing.display(Decimal(amount), currency)
"""``{{ amount | money(currency) }}``: rounded to the currency's minor unit, for people."""


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    admin: bool = False


NAV: list[NavItem] = [
    NavItem("Faxes", f"{PREFIX}/faxes"),
    NavItem("Send a fax", f"{PREFIX}/send"),
    NavItem("Overview", f"{PREFIX}/admin/overview", admin=True),
    NavItem("Sites & groups", f"{PREFIX}/admin/sites", admin=True),
    NavItem("Cost tables", f"{PREFIX}/admin/costs", admin=True),
    NavItem("Costs report", f"{PREFIX}/report"),
]
"""The navigation, in order; admin entries are shown to admins only. A new page appends
its entry here (or edits one)."""


@dataclass(frozen=True)
class Session:
    """A signed-in user: an admin (``tenant`` None) or a tenant, by the key it signed in
    with (its public id only)."""

    token: str
    tenant: str | None
    key_id: str
    csrf: str
    created: float

    @property
    def admin(self) -> bool:
        return self.tenant is None

    @property
    def who(self) -> str:
        return "admin" if self.admin else f"tenant {self.tenant}"


class NotSignedIn(Exception):
    """No valid session: a browser goes to the sign-in page, htmx gets a 401."""


class Forbidden(Exception):
    """Signed in, but not allowed (a tenant on an admin page, a wrong CSRF token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _redis() -> Any:
    return tasks.store().r


def open_session(key: StoredKey) -> Session:
    """A new session for the key a user signed in with, stored with its TTL."""
    session = Session(
        token=secrets.token_urlsafe(32),
        tenant=key.tenant,
        key_id=key.id,
        csrf=secrets.token_urlsafe(32),
        created=time.time(),
    )
    payload = {k: v for k, v in asdict(session).items() if k != "token"}
    ttl = settings.console_session_seconds
    _redis().set(keys.console_session(session.token), json.dumps(payload), ex=ttl)
    return session


def close_session(token: str) -> None:
    _redis().delete(keys.console_session(token))


def _key_configured(tenant: str | None, key_id: str) -> bool:
    return any(k.id == key_id and k.tenant == tenant for k in settings.keys.keys)


def current_session(request: Request) -> Session | None:
    """The request's session, its TTL started again; None if none is valid."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    name = keys.console_session(token)
    raw = _redis().get(name)
    if raw is None:
        return None
    data = json.loads(raw)
    session = Session(token=token, **data)
    if not _key_configured(session.tenant, session.key_id):
        close_session(token)  # the key was removed: so is every session opened with it
        return None
    _redis().expire(name, settings.console_session_seconds)
    return session


def require_session(request: Request) -> Session:
    """Dependency: the signed-in user, or :class:`NotSignedIn`."""
    session = current_session(request)
    if session is None:
        raise NotSignedIn()
    request.state.console_session = session
    return session


def require_admin(session: Session = Depends(require_session)) -> Session:
    """Dependency: a signed-in admin, or a 403 page."""
    if not session.admin:
        raise Forbidden("this page is for administrators (sign in with an admin key)")
    return session


def check_csrf(session: Session, token: str | None) -> None:
    """Raise :class:`Forbidden` unless ``token`` is the session's CSRF token."""
    if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


async def require_csrf(request: Request, session: Session = Depends(require_session)) -> None:
    """Dependency for POST routes with urlencoded forms (or htmx requests): the CSRF
    token from the ``X-CSRF-Token`` header, else from the form field ``csrf``."""
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    check_csrf(session, token)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """``template`` rendered with ``context`` and what every page needs: ``session`` (or
    None), ``csrf``, ``nav`` (the entries this user sees), ``htmx`` and ``prefix``."""
    session: Session | None = getattr(request.state, "console_session", None)
    nav = [n for n in NAV if session is not None and (session.admin or not n.admin)]
    return templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf": session.csrf if session else "",
            "nav": nav,
            "htmx": is_htmx(request),
            "prefix": PREFIX,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


def signin_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{PREFIX}/signin?next={quote(target, safe='')}"


async def not_signed_in(request: Request, _: Exception) -> Response:
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": signin_url(request)})
    return RedirectResponse(signin_url(request), status_code=303)


async def forbidden(request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, Forbidden) else "forbidden"
    if is_htmx(request):
        return HTMLResponse(f'<p class="error">{_escape(reason)}</p>', status_code=403)
    return render(request, "error.html", status_code=403, title="Not allowed", message=reason)


def _escape(text: str) -> str:
    return str(escape(text))
