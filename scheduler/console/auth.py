"""Signing in (with an admin or tenant API key, checked as the API checks ``X-API-Key``)
and out.

The sign-in form is protected from cross-site posts by a double-submit token: the form
page sets a short-lived cookie and puts the same random value in the form; a post
without both, equal, is refused.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from scheduler.console import adminapi, web
from scheduler.console.web import Session, require_csrf, require_session

router = APIRouter(prefix=web.PREFIX)

PRE_COOKIE = "ff_console_signin"
"""The sign-in form's double-submit token (not a session)."""


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith(f"{web.PREFIX}/") and not any(c in target for c in "\\\r\n"):
        return target
    return f"{web.PREFIX}/faxes"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _signin_page(
    request: Request, next_: str | None, error: str | None = None, status_code: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    response = web.render(
        request,
        "signin.html",
        status_code=status_code,
        title="Sign in",
        next=_safe_next(next_),
        signin_token=token,
        error=error,
    )
    response.set_cookie(
        PRE_COOKIE,
        token,
        max_age=3600,
        path=f"{web.PREFIX}/signin",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/signin")
def signin_form(request: Request, next: str | None = None) -> Response:
    if web.current_session(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _signin_page(request, next)


@router.post("/signin")
def signin(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    signin_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(PRE_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), signin_token.encode()):
        return _signin_page(
            request, next, "the sign-in form expired or came from elsewhere: try again", 403
        )
    key = api_key.strip()
    if not key:
        return _signin_page(request, next, "enter your API key (a tenant or admin key)", 422)
    stored = web.settings.keys.match(key)  # as the API checks X-API-Key
    if stored is None:
        return _signin_page(
            request, next, "unknown API key: it is neither a tenant key nor an admin key", 401
        )
    session = web.open_session(stored)
    adminapi.remember(session.token, stored, key)  # server-side only (adminapi.py)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        web.COOKIE,
        session.token,  # a browser-session cookie: Redis's TTL says when it ends
        path=web.PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(PRE_COOKIE, path=f"{web.PREFIX}/signin")
    return response


@router.post("/signout", dependencies=[Depends(require_csrf)])
def signout(request: Request, session: Annotated[Session, Depends(require_session)]) -> Response:
    web.close_session(session.token)
    adminapi.forget(session.token)
    response = RedirectResponse(f"{web.PREFIX}/signin", status_code=303)
    response.delete_cookie(web.COOKIE, path=web.PREFIX)
    return response


@router.get("/")
def home(_: Annotated[Session, Depends(require_session)]) -> Response:
    return RedirectResponse(f"{web.PREFIX}/faxes", status_code=303)
