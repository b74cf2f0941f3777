"""The web console's sessions over real HTTP: the public API as a real uvicorn process on
the test's private Redis (no fleet). Signing in with a wrong key, the session cookie and
its Redis record, signing out, a session running out, CSRF tokens, htmx redirects, and
the admin pages' guard. The browser tests with a fleet are in
tests/test_console_browser.py."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from faxfleet.redis_server import RedisServer
from tests.uvicorn_apps import running_api

ADMIN_KEY = "admin-key"
ACME_KEY = "acme-key"


@dataclass
class Api:
    url: str
    log: Path


def _api(redis_server: RedisServer, logs: Path, **extra: str) -> Iterator[Api]:
    env = {
        **os.environ,
        "FAXFLEET_DEMO": "1",
        "FAXFLEET_REDIS_URL": redis_server.url,
        "FAXFLEET_SITE": "paris",
        "FAXFLEET_API_KEYS": "acme=acme-key,globex=globex-key",
        "FAXFLEET_ADMIN_KEYS": ADMIN_KEY,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    with running_api(env, logs) as app:
        yield Api(app.url, app.log)


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from _api(redis_server, tmp_path_factory.mktemp("console-logs"))


@pytest.fixture
def rc(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in:\n{html[:2000]}"
    return match.group(1)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """Post the sign-in form as a browser would (its token from the form page)."""
    form = client.get("/console/signin")
    assert form.status_code == 200, form.text
    return client.post(
        "/console/signin",
        data={"api_key": key, "signin_token": _field(form.text, "signin_token"), "next": ""},
    )


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/console/faxes")
    assert page.status_code == 200, page.text
    return _field(page.text, "csrf")


def test_every_page_but_sign_in_needs_a_session(server: Api) -> None:
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/console/faxes?state=done")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/signin?next=%2Fconsole%2Ffaxes%3Fstate%3Ddone"
        assert client.get("/console/signin").status_code == 200
        # htmx follows HX-Redirect: a poll after the session ended goes to the sign-in page.
        poll = client.get("/console/faxes/rows", headers={"HX-Request": "true"})
        assert poll.status_code == 401
        assert poll.headers["HX-Redirect"].startswith("/console/signin?next=")
        assert client.get("/").headers["location"] == "/console/"
        assert client.get("/console/static/htmx.min.js").status_code == 200


def test_a_wrong_key_is_refused_with_a_clear_message(server: Api) -> None:
    with httpx.Client(base_url=server.url) as client:
        wrong = sign_in(client, "not-a-key")
        assert wrong.status_code == 401
        assert "unknown API key: it is neither a tenant key nor an admin key" in wrong.text
        assert "ff_console=" not in wrong.headers.get("set-cookie", "")
        empty = sign_in(client, "  ")
        assert empty.status_code == 422
        assert "enter your API key" in empty.text
        # A post that did not come from the form (no double-submit token) is refused.
        forged = client.post("/console/signin", data={"api_key": ACME_KEY})
        assert forged.status_code == 403
        assert "came from elsewhere" in forged.text


def test_a_session_is_a_random_token_in_redis_never_the_key(server: Api, rc: redis.Redis) -> None:
    with httpx.Client(base_url=server.url) as client:
        signed = sign_in(client, ACME_KEY)
        assert signed.status_code == 303
        assert signed.headers["location"] == "/console/faxes"
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith("ff_console=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http here; https requests get Secure
        token = client.cookies["ff_console"]
        assert ACME_KEY not in cookie and len(token) >= 40
        record = rc.get(f"ff:console:session:{token}")
        assert record is not None and ACME_KEY.encode() not in record
        assert b'"tenant": "acme"' in record
        assert 0 < rc.ttl(f"ff:console:session:{token}") <= 8 * 3600
        page = client.get("/console/faxes")
        assert page.status_code == 200
        assert "tenant acme" in page.text
        # A tenant sees no admin entries in the navigation.
        assert "/console/admin/overview" not in page.text


def test_sign_out_revokes_the_session_everywhere(server: Api, rc: redis.Redis) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert sign_in(client, ADMIN_KEY).status_code == 303
        token = client.cookies["ff_console"]
        csrf = csrf_of(client)
        # Without the CSRF token, signing out is refused (and the session lives on).
        refused = client.post("/console/signout")
        assert refused.status_code == 403
        assert "missing or wrong CSRF token" in refused.text
        assert rc.exists(f"ff:console:session:{token}")
        out = client.post("/console/signout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/console/signin"
        assert not rc.exists(f"ff:console:session:{token}")
    # The old cookie, replayed (another tab, another API node), opens nothing.
    with httpx.Client(base_url=server.url, cookies={"ff_console": token}) as replay:
        assert replay.get("/console/faxes").status_code == 303


def test_state_changing_requests_need_the_csrf_token(server: Api) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert sign_in(client, ACME_KEY).status_code == 303
        csrf = csrf_of(client)
        for data, headers in (({}, {}), ({"csrf": "x" * 43}, {}), ({}, {"X-CSRF-Token": "y"})):
            refused = client.post("/console/faxes/fx_0/cancel", data=data, headers=headers)
            assert refused.status_code == 403, (data, headers)
        # With the token (the form field or htmx's header), the request gets through to
        # the fax, which does not exist.
        for data, headers in (({"csrf": csrf}, {}), ({}, {"X-CSRF-Token": csrf})):
            passed = client.post("/console/faxes/fx_0/cancel", data=data, headers=headers)
            assert passed.status_code == 404, passed.text
            assert "no fax fx_0" in passed.text
        # The send form is multipart: its token is a field of the upload.
        send = client.post(
            "/console/send",
            data={"to": "+33142685300"},
            files=[("documents", ("a.txt", b"hello", "text/plain"))],
        )
        assert send.status_code == 403


def test_the_send_form_is_the_api_submission(server: Api, rc: redis.Redis) -> None:
    rc.sadd("ff:homes", "paris")  # no fleet: the home site a scheduler would announce
    with httpx.Client(base_url=server.url) as client:
        assert sign_in(client, ACME_KEY).status_code == 303
        form = client.get("/console/send").text
        fields = {
            "csrf": _field(form, "csrf"),
            "idempotency_key": _field(form, "idempotency_key"),
            "to": "+33142685300",
            "priority": "8",
            "user": "erin",
        }
        files = [("documents", ("note.txt", b"hello", "text/plain"))]
        refused = client.post("/console/send", data={**fields, "priority": "10"}, files=files)
        assert refused.status_code == 422
        assert "priority: Input should be less than or equal to 9" in refused.text
        assert 'value="+33142685300"' in refused.text  # what was typed is kept
        sent = client.post("/console/send", data=fields, files=files)
        assert sent.status_code == 303, sent.text
        fax_id = sent.headers["location"].split("/")[-1].split("?")[0]
        # The same form posted again (a double click) is the same fax.
        again = client.post("/console/send", data=fields, files=files)
        assert again.headers["location"].startswith(f"/console/faxes/{fax_id}")
    with httpx.Client(base_url=server.url, headers={"X-API-Key": ACME_KEY}) as api:
        fax = api.get(f"/v1/faxes/{fax_id}").json()
    assert (fax["tenant"], fax["priority"], fax["user"]) == ("acme", 8, "erin")
    assert fax["idempotency_key"] == fields["idempotency_key"]


def test_actions_show_the_api_refusals(server: Api, rc: redis.Redis) -> None:
    rc.sadd("ff:homes", "paris")
    with httpx.Client(base_url=server.url, headers={"X-API-Key": ACME_KEY}) as api:
        sent = api.post(
            "/v1/faxes",
            data={"to": "+33142685300"},
            files=[("documents", ("a.txt", b"hello", "text/plain"))],
        )
        assert sent.status_code == 201, sent.text
        fax_id = sent.json()["id"]  # nobody renders it here: it stays "rendering"
    with httpx.Client(base_url=server.url) as admin:
        assert sign_in(admin, ADMIN_KEY).status_code == 303
        csrf = csrf_of(admin)
        resolve = admin.post(
            f"/console/faxes/{fax_id}/resolve", data={"csrf": csrf, "outcome": "sent"}
        )
        assert resolve.status_code == 409
        assert f"fax {fax_id} is rendering: no recipient&#39;s outcome is uncertain" in resolve.text
        bad = admin.post(f"/console/faxes/{fax_id}/resolve", data={"csrf": csrf, "outcome": "x"})
        assert bad.status_code == 422 and "outcome: Input should be" in bad.text
        retry = admin.post(f"/console/faxes/{fax_id}/retry", data={"csrf": csrf})
        assert retry.status_code == 409
        assert "no recipient failed or has an uncertain outcome" in retry.text
        late = admin.post(
            f"/console/faxes/{fax_id}/alter", data={"csrf": csrf, "send_after": "tomorrow"}
        )
        assert late.status_code == 422 and "send_after" in late.text
        # An admin sends for a tenant it names, as with the API.
        form = admin.get("/console/send").text
        assert '<select name="tenant" required>' in form
        nameless = admin.post(
            "/console/send",
            data={"csrf": csrf, "to": "+33142685300"},
            files=[("documents", ("a.txt", b"hello", "text/plain"))],
        )
        assert nameless.status_code == 422
        assert "an admin key submits for a tenant: name it in &#39;tenant&#39;" in nameless.text
        cancel = admin.post(f"/console/faxes/{fax_id}/cancel", data={"csrf": csrf})
        assert cancel.status_code == 303
        assert cancel.headers["location"] == f"/console/faxes/{fax_id}?done=cancelled"
    with httpx.Client(base_url=server.url) as tenant:
        assert sign_in(tenant, ACME_KEY).status_code == 303
        csrf = csrf_of(tenant)
        refused = tenant.post(
            f"/console/faxes/{fax_id}/resolve", data={"csrf": csrf, "outcome": "sent"}
        )
        assert refused.status_code == 403
        again = tenant.post(f"/console/faxes/{fax_id}/cancel", data={"csrf": csrf})
        assert again.status_code == 409 and f"fax {fax_id} is already cancelled" in again.text
        page = tenant.get(f"/console/faxes/{fax_id}")
        assert 'data-state="cancelled"' in page.text
        assert "hx-trigger" not in page.text  # settled: no polling


def test_the_cookie_is_secure_over_https(server: Api) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback, as from a TLS proxy in front of it.
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, headers=https) as client:
        form = client.get("/console/signin")
        assert "Secure" in form.headers["set-cookie"]
        # A Secure cookie over plain http: the client would not send it back by itself.
        client.cookies.set("ff_console_signin", form.cookies["ff_console_signin"])
        signed = client.post(
            "/console/signin",
            data={"api_key": ACME_KEY, "signin_token": _field(form.text, "signin_token")},
        )
        assert signed.status_code == 303, signed.text
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith("ff_console=")
        )
        assert "; Secure" in cookie


def test_admin_pages_are_for_admins(server: Api) -> None:
    with httpx.Client(base_url=server.url) as tenant:
        assert sign_in(tenant, ACME_KEY).status_code == 303
        for path in ("/console/admin/overview", "/console/admin/sites", "/console/admin/x"):
            page = tenant.get(path)
            assert page.status_code == 403, path
            assert "for administrators" in page.text
    with httpx.Client(base_url=server.url) as admin:
        assert sign_in(admin, ADMIN_KEY).status_code == 303
        page = admin.get("/console/faxes")
        for path in ("admin/overview", "admin/sites", "admin/costs", "report"):
            assert f'href="/console/{path}"' in page.text
        assert admin.get("/console/admin/nothing-here").status_code == 404


def test_after_sign_in_only_console_paths_are_followed(server: Api) -> None:
    with httpx.Client(base_url=server.url) as client:
        form = client.get("/console/signin?next=//evil.example/x")
        assert _field(form.text, "next") == "/console/faxes"
        form = client.get("/console/signin?next=/console/send")
        token = _field(form.text, "signin_token")
        signed = client.post(
            "/console/signin",
            data={"api_key": ACME_KEY, "signin_token": token, "next": "/console/send"},
        )
        assert signed.headers["location"] == "/console/send"


@pytest.fixture
def short_lived(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    yield from _api(
        redis_server, tmp_path_factory.mktemp("console-ttl"), FAXFLEET_CONSOLE_SESSION_SECONDS="2"
    )


def test_a_removed_key_ends_its_sessions(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory, server: Api
) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert sign_in(client, "globex-key").status_code == 303
        token = client.cookies["ff_console"]
    # Another API node, on the same Redis, whose configuration no longer has the key.
    logs = tmp_path_factory.mktemp("console-rotated")
    for node in _api(redis_server, logs, FAXFLEET_API_KEYS="acme=acme-key"):
        with httpx.Client(base_url=node.url, cookies={"ff_console": token}) as rotated:
            assert rotated.get("/console/faxes").status_code == 303
    with httpx.Client(base_url=server.url, cookies={"ff_console": token}) as client:
        assert client.get("/console/faxes").status_code == 303  # gone from Redis too


def test_an_idle_session_runs_out(short_lived: Api, rc: redis.Redis) -> None:
    with httpx.Client(base_url=short_lived.url) as client:
        assert sign_in(client, ACME_KEY).status_code == 303
        token = client.cookies["ff_console"]
        assert rc.ttl(f"ff:console:session:{token}") <= 2
        # Each request starts the time again: 3 s of use, a request every second.
        for _ in range(3):
            time.sleep(1)
            assert client.get("/console/faxes").status_code == 200
        time.sleep(2.5)
        expired = client.get("/console/faxes")
        assert expired.status_code == 303
        assert expired.headers["location"].startswith("/console/signin")
        assert not rc.exists(f"ff:console:session:{token}")
