"""Callbacks go to public addresses only (SSRF): real HTTP servers on loopback, which a
callback may reach only when FAXFLEET_CALLBACK_ALLOW opens them, and resolvers given as
plain functions where a test needs a name to resolve a certain way (DNS rebinding)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from faxfleet.kinds import Resolution
from faxfleet.messages import FaxStatus, InboundFax, JobState, NotifyTarget, RecipientStatus
from faxfleet.settings import Settings
from scheduler.notify import NotifyError, post_callback, post_inbound_callback

STATUS = FaxStatus(
    id="fx_guard",
    tenant="acme",
    state=JobState.DONE,
    priority=5,
    resolution=Resolution.FINE,
    home_site="paris",
    created_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
    kill_at=datetime(2026, 1, 5, 12, 30, tzinfo=UTC),
    documents=[],
    recipients=[RecipientStatus(index=0, number="+33142685300", state=JobState.DONE)],
)


@dataclass
class Hook:
    """A real HTTP server that records every request and answers ``answer`` (with a
    ``Location`` header when ``location`` is set)."""

    host: str
    port: int = 0
    answer: int = 204
    location: str | None = None
    answers: dict[str, int] = field(default_factory=dict)
    """Answers by path, overriding ``answer``."""
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{name}:{self.port}{path}"


@contextmanager
def serving(host: str = "127.0.0.1", port: int = 0) -> Iterator[Hook]:
    hook = Hook(host, port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(hook.answers.get(self.path, hook.answer))
            if hook.location:
                self.send_header("Location", hook.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server_class = ThreadingHTTPServer
    if ":" in host:

        class V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = V6Server
    server = server_class((host, port), Handler)
    server.daemon_threads = True
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def twin_hooks() -> Iterator[tuple[Hook, Hook]]:
    """Two servers on the same port, one on 127.0.0.1 (the address a test allows) and
    one on 127.0.0.2 (an address it does not): whichever a callback reaches shows which
    address it connected to."""
    for _ in range(20):
        with serving("127.0.0.1") as allowed:
            try:
                with serving("127.0.0.2", allowed.port) as other:
                    yield allowed, other
                    return
            except OSError:  # that port is taken on 127.0.0.2: try another
                continue
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def hanging_up() -> Iterator[int]:
    """A TCP server that accepts and closes at once ("Server disconnected")."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def settings(allow: str = "", **extra: Any) -> Settings:
    return Settings(callback_allow=allow, notify_timeout_seconds=3, **extra)


class Resolver:
    """A resolver given as a table; answers ``then`` from the second lookup on (a name
    whose owner changes its DNS answer between the check and the connection)."""

    def __init__(self, first: dict[str, list[str]], then: dict[str, list[str]] | None = None):
        self.first, self.then = first, then
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        table = self.then if self.then is not None and len(self.asked) > 1 else self.first
        return table[host]


def refused(call: Callable[[], object]) -> NotifyError:
    with pytest.raises(NotifyError) as caught:
        call()
    return caught.value


# -- refused by default -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",  # a name the system resolves to loopback
        "2130706433",  # 127.0.0.1 written as one number
        "0x7f.1",
        "127.1",
        "[::ffff:127.0.0.1]",  # IPv4-mapped: the same socket on a dual-stack host
    ],
)
def test_a_callback_to_loopback_is_refused_by_default_and_sends_nothing(host: str) -> None:
    with serving() as hook:
        error = refused(lambda: post_callback(settings(), hook.url(host=host), STATUS, "paris"))
    assert hook.requests == []
    assert error.retryable is False
    assert error.public == "refused: not a public address"
    assert "loopback" in str(error)  # the detail, for the log


def test_a_callback_to_ipv6_loopback_is_refused_by_default() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        context = serving("::1")
        hook = context.__enter__()
    except OSError:
        pytest.skip("no ::1")
    try:
        error = refused(lambda: post_callback(settings(), hook.url(), STATUS, "paris"))
        assert hook.requests == []
        assert error.public == "refused: not a public address"
        post_callback(settings("::1"), hook.url(), STATUS, "paris")
        assert len(hook.requests) == 1
    finally:
        context.__exit__(None, None, None)


def test_the_inbound_callback_is_refused_too() -> None:
    fax = InboundFax(
        id="in_guard",
        tenant="acme",
        site="paris",
        line="paris-1",
        pages=1,
        ok=True,
        received_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        notify=NotifyTarget(),
    )
    with serving() as hook:
        error = refused(lambda: post_inbound_callback(settings(), hook.url(), fax, "paris"))
        assert hook.requests == []
        assert error.public == "refused: not a public address"
        post_inbound_callback(settings("127.0.0.1"), hook.url(), fax, "paris")
        assert [r["headers"]["X-Faxfleet-Inbound"] for r in hook.requests] == ["in_guard"]


# -- the allow-list ---------------------------------------------------------------------------


def test_an_allowed_address_is_reached() -> None:
    with serving() as hook:
        code = post_callback(settings(f"127.0.0.1:{hook.port}"), hook.url(), STATUS, "paris")
    assert code == 204
    assert [r["path"] for r in hook.requests] == ["/hook"]
    assert hook.requests[0]["headers"]["X-Faxfleet-Job"] == "fx_guard"


def test_an_allowed_address_on_another_port_is_still_refused() -> None:
    with serving() as hook:
        error = refused(lambda: post_callback(settings("127.0.0.1:1"), hook.url(), STATUS, "paris"))
    assert hook.requests == []
    assert error.public == "refused: not a public address"


def test_an_allowed_host_name_is_reached_by_name_only() -> None:
    with serving() as hook:
        allow = settings(f"localhost:{hook.port}")
        assert post_callback(allow, hook.url(host="localhost"), STATUS, "paris") == 204
        error = refused(lambda: post_callback(allow, hook.url(), STATUS, "paris"))
    assert len(hook.requests) == 1
    assert error.public == "refused: not a public address"


# -- DNS rebinding, mixed answers -------------------------------------------------------------


def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """The name resolves to an allowed address for the check, then to one that is not:
    the callback reaches the checked address, with the name in its Host header, and the
    name is looked up once."""
    with twin_hooks() as (allowed, other):
        resolve = Resolver(
            {"hooks.tenant.example": ["127.0.0.1"]}, then={"hooks.tenant.example": ["127.0.0.2"]}
        )
        url = allowed.url(host="hooks.tenant.example")
        assert post_callback(settings("127.0.0.1"), url, STATUS, "paris", resolve=resolve) == 204
    assert resolve.asked == ["hooks.tenant.example"]
    assert other.requests == []
    assert [r["headers"]["Host"] for r in allowed.requests] == [
        f"hooks.tenant.example:{allowed.port}"
    ]


def test_a_name_rebound_to_a_refused_address_reaches_nothing() -> None:
    with twin_hooks() as (allowed, other):
        resolve = Resolver({"hooks.tenant.example": ["127.0.0.2"]})
        url = allowed.url(host="hooks.tenant.example")
        error = refused(
            lambda: post_callback(settings("127.0.0.1"), url, STATUS, "paris", resolve=resolve)
        )
    assert allowed.requests == [] and other.requests == []
    assert error.public == "refused: not a public address"
    assert "127.0.0.2 (loopback)" in str(error)


def test_of_several_addresses_only_allowed_ones_are_tried() -> None:
    with twin_hooks() as (allowed, other):
        resolve = Resolver({"hooks.tenant.example": ["127.0.0.2", "10.0.0.1", "127.0.0.1"]})
        url = allowed.url(host="hooks.tenant.example")
        post_callback(settings("127.0.0.1"), url, STATUS, "paris", resolve=resolve)
    assert other.requests == []
    assert len(allowed.requests) == 1


# -- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_a_private_address_is_not_followed(code: int) -> None:
    with twin_hooks() as (allowed, other):
        allowed.answer, allowed.location = code, other.url("/internal")
        error = refused(
            lambda: post_callback(settings("127.0.0.1"), allowed.url(), STATUS, "paris")
        )
    assert len(allowed.requests) == 1
    assert other.requests == []
    assert error.retryable is False
    assert error.public == "failed: redirected (redirects are not followed)"


# -- what the history says, what the log says ------------------------------------------------


INTERNAL_TEXT = ("refused", "disconnect", "401", "Unauthorized", "127.0.0.1", "reset")


def _public_only(error: NotifyError, *details: str) -> None:
    """The generic reason carries nothing of the target's own answer; the detail does
    (one of ``details``: a hang-up reads as a disconnect or a reset, by timing)."""
    assert any(detail.lower() in str(error).lower() for detail in details), str(error)
    assert not any(text.lower() in error.public.lower() for text in INTERNAL_TEXT)


def test_a_closed_port_reads_no_answer() -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    error = refused(lambda: post_callback(settings("127.0.0.1"), url, STATUS, "paris"))
    assert error.public == "failed: no answer"
    assert error.retryable is True
    _public_only(error, "refused")


def test_a_server_that_hangs_up_reads_no_answer() -> None:
    with hanging_up() as port:
        url = f"http://127.0.0.1:{port}/hook"
        error = refused(lambda: post_callback(settings("127.0.0.1"), url, STATUS, "paris"))
    assert error.public == "failed: no answer"
    _public_only(error, "disconnect", "reset")


def test_an_error_answer_from_an_allowed_private_address_is_not_quoted() -> None:
    with serving() as hook:
        hook.answer = 401
        error = refused(lambda: post_callback(settings("127.0.0.1"), hook.url(), STATUS, "p"))
    assert error.public == "failed: error answer"
    assert error.retryable is False
    _public_only(error, "401 Unauthorized")


def test_an_unknown_name_reads_no_answer() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = refused(
        lambda: post_callback(
            settings(), "https://nowhere.invalid/hook", STATUS, "paris", resolve=nowhere
        )
    )
    assert error.public == "failed: no answer"
    assert error.retryable is True


def test_a_url_with_credentials_is_not_sent() -> None:
    with serving() as hook:
        url = hook.url().replace("http://", "http://admin:admin@")
        error = refused(lambda: post_callback(settings("127.0.0.1"), url, STATUS, "paris"))
    assert hook.requests == []
    assert error.public == "failed: not a valid http or https URL"
    assert error.retryable is False


# -- TLS: connected by address, verified by name ---------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.tenant.example",
            "-addext", "subjectAltName=DNS:hooks.tenant.example",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_connects_by_address_and_verifies_the_name(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    names: list[str | None] = []
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    def remember(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    server_context.sni_callback = remember  # type: ignore[assignment]
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    client_context = ssl.create_default_context(cafile=str(cert))
    resolve = Resolver({"hooks.tenant.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    try:
        good = f"https://hooks.tenant.example:{port}/hook"
        code = post_callback(
            settings("127.0.0.1"), good, STATUS, "p", resolve=resolve, ssl_context=client_context
        )
        assert code == 200
        assert names == ["hooks.tenant.example"]
        assert [h["Host"] for h in seen] == [f"hooks.tenant.example:{port}"]

        # A name the certificate does not cover, on the same address: refused by TLS.
        wrong = f"https://other.example:{port}/hook"
        error = refused(
            lambda: post_callback(
                settings("127.0.0.1"),
                wrong,
                STATUS,
                "p",
                resolve=resolve,
                ssl_context=client_context,
            )
        )
        assert "certificate" in str(error).lower()
        assert error.public == "failed: no answer"
        assert len(seen) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
