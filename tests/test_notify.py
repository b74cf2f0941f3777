"""Notification senders against real servers: an aiosmtpd SMTP server and an HTTP receiver
that checks the callback signature with faxfleet.signing.verify."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from faxfleet.messages import (
    Cause,
    DocumentInfo,
    FaxStatus,
    JobState,
    RecipientStatus,
    Resolution,
    Transition,
)
from faxfleet.settings import Settings
from faxfleet.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSignature,
    sign,
    signature_headers,
    verify,
)
from scheduler.notify import (
    NotifyError,
    callback_body,
    post_callback,
    render_email,
    send_email,
)

SECRET = "s3cret-for-tests"
LOOPBACK = "127.0.0.0/8"
"""The receivers below listen on loopback, which callbacks may reach only when allowed."""
CREATED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_status(
    recipients: list[RecipientStatus] | None = None,
    state: JobState = JobState.DONE,
    pages: int | None = 3,
    cause: Cause | None = None,
) -> FaxStatus:
    if recipients is None:
        recipients = [
            RecipientStatus(
                index=0,
                number="+33142685300",
                state=JobState.DONE,
                site="lyon",
                line="lyon-2",
                attempt=1,
                dials=1,
                tries=1,
                pages_confirmed=3,
                remote_id="+33 1 42 68 53 00",
                updated_at=CREATED + timedelta(minutes=2),
            )
        ]
    return FaxStatus(
        id="fx_123",
        tenant="demo",
        state=state,
        priority=5,
        resolution=Resolution.FINE,
        user="alice",
        home_site="paris",
        created_at=CREATED,
        kill_at=CREATED + timedelta(hours=3),
        documents=[DocumentInfo(name="invoice.pdf", content_type="application/pdf", size=1234)],
        pages=pages,
        recipients=recipients,
        cause=cause,
        history=[
            Transition(at=CREATED, recipient=None, from_state=None, to_state=JobState.SUBMITTED)
        ],
    )


def failed_recipient(index: int = 0, cause: Cause = Cause.BUSY) -> RecipientStatus:
    return RecipientStatus(
        index=index,
        number="+33478000000",
        state=JobState.FAILED,
        site="paris",
        line="paris-1",
        attempt=4,
        dials=4,
        tries=0,
        pages_confirmed=0,
        cause=cause,
        detail="line busy on every dial",
    )


# ----------------------------------------------------------------------------------------
# SMTP


class Collector:
    """aiosmtpd handler: keeps every envelope; refuses some recipients on demand."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield collector, controller.port
    finally:
        controller.stop()


def test_send_email_delivers_a_readable_result(smtp_server: tuple[Collector, int]) -> None:
    collector, port = smtp_server
    settings = Settings(smtp_port=port, smtp_from="fax@example.org", notify_timeout_seconds=5)

    send_email(settings, "alice@example.org", make_status(), site="paris")

    assert len(collector.envelopes) == 1
    envelope = collector.envelopes[0]
    assert envelope.mail_from == "fax@example.org"
    assert envelope.rcpt_tos == ["alice@example.org"]
    mail = message_from_bytes(envelope.content, policy=policy.default)
    assert mail["To"] == "alice@example.org"
    assert mail["From"] == "fax@example.org"
    assert mail["Subject"] == "Fax fx_123 to +33142685300: delivered (3 pages)"
    assert mail["X-Faxfleet-Job"] == "fx_123"
    body = mail.get_content()
    assert "+33142685300" in body
    assert "3 of 3 confirmed" in body
    assert "Attempts:   1" in body
    assert "site lyon (line lyon-2)" in body
    assert "home site paris" in body


def test_render_email_failed_single_recipient() -> None:
    status = make_status([failed_recipient()], state=JobState.FAILED, cause=Cause.BUSY)
    mail = render_email(status, "paris")
    assert isinstance(mail, EmailMessage)
    assert mail["Subject"] == "Fax fx_123 to +33478000000: failed: busy"
    body = mail.get_content()
    assert "0 of 3 confirmed" in body
    assert "Cause:      busy" in body
    assert "Attempts:   4" in body
    assert "line busy on every dial" in body


def test_render_email_several_recipients_summarises() -> None:
    ok = make_status().recipients[0]
    status = make_status(
        [ok, failed_recipient(1), failed_recipient(2, Cause.NO_ANSWER)], state=JobState.FAILED
    )
    mail = render_email(status, "paris")
    assert mail["Subject"] == "Fax fx_123 to 3 recipients: 1 delivered, 2 failed"
    body = mail.get_content()
    assert "3 recipients:" in body
    for text in ("1. +33142685300", "2. +33478000000", "3. +33478000000", "no_answer"):
        assert text in body


def test_render_email_outcome_uncertain_explains() -> None:
    recipient = RecipientStatus(
        index=0,
        number="+33142685300",
        state=JobState.OUTCOME_UNCERTAIN,
        site="lyon",
        attempt=1,
        pages_confirmed=1,
        cause=Cause.WORKER_LOST,
    )
    mail = render_email(make_status([recipient], state=JobState.OUTCOME_UNCERTAIN), "paris")
    assert mail["Subject"] == "Fax fx_123 to +33142685300: outcome uncertain: worker_lost"
    assert "may or may not have" in mail.get_content()


def test_send_email_recipient_refused_5xx_is_permanent(
    smtp_server: tuple[Collector, int],
) -> None:
    collector, port = smtp_server
    collector.refuse["nobody@example.org"] = "550 5.1.1 No such user"
    with pytest.raises(NotifyError) as caught:
        send_email(Settings(smtp_port=port), "nobody@example.org", make_status(), "paris")
    assert caught.value.retryable is False
    assert "550" in str(caught.value)
    assert collector.envelopes == []


def test_send_email_recipient_refused_4xx_is_retryable(
    smtp_server: tuple[Collector, int],
) -> None:
    collector, port = smtp_server
    collector.refuse["later@example.org"] = "451 4.3.0 Try again later"
    with pytest.raises(NotifyError) as caught:
        send_email(Settings(smtp_port=port), "later@example.org", make_status(), "paris")
    assert caught.value.retryable is True


def test_send_email_closed_port_is_retryable() -> None:
    settings = Settings(smtp_port=free_port(), notify_timeout_seconds=2)
    with pytest.raises(NotifyError) as caught:
        send_email(settings, "alice@example.org", make_status(), "paris")
    assert caught.value.retryable is True


# ----------------------------------------------------------------------------------------
# HTTP callback


@dataclass
class Receiver:
    """What the HTTP receiver saw, and what it answers."""

    url: str
    answer: int = 200
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                verify(SECRET, self.headers, body)
                problem = None
            except InvalidSignature as exc:
                problem = str(exc)
            state.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                    "signature_problem": problem,
                }
            )
            if state.delay:
                time.sleep(state.delay)
            self.send_response(state.answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fax"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_post_callback_sends_signed_json(receiver: Receiver) -> None:
    status = make_status()
    code = post_callback(
        Settings(webhook_secret=SECRET, callback_allow=LOOPBACK), receiver.url, status, "paris"
    )

    assert code == 200
    assert len(receiver.requests) == 1
    seen = receiver.requests[0]
    assert seen["path"] == "/hooks/fax"
    assert seen["signature_problem"] is None
    headers = {key.lower(): value for key, value in seen["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-faxfleet-job"] == "fx_123"
    assert seen["body"] == callback_body(status, "paris")
    document = json.loads(seen["body"])
    assert document["event"] == "fax.settled"
    assert document["notified_by"] == "paris"
    assert document["fax"]["id"] == "fx_123"
    assert document["fax"]["recipients"][0]["pages_confirmed"] == 3
    assert document["fax"]["recipients"][0]["state"] == "done"
    assert "history" not in document["fax"]


def test_callback_body_is_compact_json() -> None:
    body = callback_body(make_status(), "paris")
    assert b": " not in body and b", " not in body
    assert json.loads(body)["fax"]["created_at"].startswith("2026-01-05T09:30:00")


def test_post_callback_wrong_secret_fails_verification(receiver: Receiver) -> None:
    post_callback(
        Settings(webhook_secret="other", callback_allow=LOOPBACK),
        receiver.url,
        make_status(),
        "paris",
    )
    assert receiver.requests[0]["signature_problem"] == "bad signature"


@pytest.mark.parametrize(
    ("answer", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
def test_post_callback_error_answers(receiver: Receiver, answer: int, retryable: bool) -> None:
    receiver.answer = answer
    with pytest.raises(NotifyError) as caught:
        post_callback(
            Settings(webhook_secret=SECRET, callback_allow=LOOPBACK),
            receiver.url,
            make_status(),
            "paris",
        )
    assert caught.value.retryable is retryable
    assert str(answer) in str(caught.value)


def test_post_callback_accepts_any_2xx(receiver: Receiver) -> None:
    receiver.answer = 204
    settings = Settings(webhook_secret=SECRET, callback_allow=LOOPBACK)
    assert post_callback(settings, receiver.url, make_status(), "p") == 204


def test_post_callback_closed_port_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(NotifyError) as caught:
        post_callback(
            Settings(notify_timeout_seconds=2, callback_allow=LOOPBACK), url, make_status(), "paris"
        )
    assert caught.value.retryable is True


def test_post_callback_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.delay = 1.5
    settings = Settings(webhook_secret=SECRET, notify_timeout_seconds=0.3, callback_allow=LOOPBACK)
    with pytest.raises(NotifyError) as caught:
        post_callback(settings, receiver.url, make_status(), "paris")
    assert caught.value.retryable is True


def test_post_callback_unsupported_scheme_is_permanent() -> None:
    with pytest.raises(NotifyError) as caught:
        post_callback(Settings(), "ftp://127.0.0.1/hook", make_status(), "paris")
    assert caught.value.retryable is False


# ----------------------------------------------------------------------------------------
# Signing


BODY = b'{"event":"fax.settled"}'


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, BODY) == f"v1={expected}"


def test_verify_round_trip() -> None:
    headers = signature_headers(SECRET, BODY, now=1_700_000_000)
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    verify(SECRET, headers, BODY, now=1_700_000_010)
    verify(SECRET, signature_headers(SECRET, BODY), BODY)  # real clock


def test_verify_header_lookup_is_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signature_headers(SECRET, BODY).items()}
    verify(SECRET, headers, BODY)


def test_verify_rejects_tampered_body() -> None:
    headers = signature_headers(SECRET, BODY)
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify(SECRET, headers, BODY.replace(b"settled", b"started"))


def test_verify_rejects_wrong_secret() -> None:
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify("other", signature_headers(SECRET, BODY), BODY)


def test_verify_rejects_replayed_timestamp() -> None:
    # Re-sign nothing, but move the timestamp: the signature no longer matches.
    headers = signature_headers(SECRET, BODY, now=1_700_000_000)
    headers[TIMESTAMP_HEADER] = "1700000005"
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify(SECRET, headers, BODY, now=1_700_000_005)


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_verify_rejects_stale_timestamp(skew: int) -> None:
    headers = signature_headers(SECRET, BODY, now=1_700_000_000)
    with pytest.raises(InvalidSignature, match="stale timestamp"):
        verify(SECRET, headers, BODY, now=1_700_000_000 + skew)
    verify(SECRET, headers, BODY, now=1_700_000_000 + skew, tolerance_seconds=abs(skew) + 1)


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_verify_rejects_missing_header(missing: str) -> None:
    headers = signature_headers(SECRET, BODY)
    del headers[missing]
    with pytest.raises(InvalidSignature, match=f"missing {missing}"):
        verify(SECRET, headers, BODY)


def test_verify_rejects_malformed_headers() -> None:
    headers = signature_headers(SECRET, BODY)
    with pytest.raises(InvalidSignature, match="malformed"):
        verify(SECRET, {**headers, TIMESTAMP_HEADER: "yesterday"}, BODY)
    with pytest.raises(InvalidSignature, match="no v1="):
        verify(SECRET, {**headers, SIGNATURE_HEADER: "v0=abc"}, BODY)


def test_verify_accepts_any_of_several_signatures() -> None:
    headers = signature_headers(SECRET, BODY)
    headers[SIGNATURE_HEADER] = f"v1={'0' * 64}, {headers[SIGNATURE_HEADER]}"
    verify(SECRET, headers, BODY)


@pytest.mark.parametrize(
    "timestamp",
    [
        "9" * 400,  # an int, but too large for a float: OverflowError before
        "9" * 5000,  # beyond Python's int() digit limit
        "1e308",
        "inf",
        "-1",
        "+1700000000",
        "1_700_000_000",
        "\u0661\u0667" + "\u0660" * 8,  # Arabic-Indic digits, which int() reads
        "0x6553f100",
    ],
)
def test_verify_refuses_huge_or_malformed_timestamps(timestamp: str) -> None:
    headers = signature_headers(SECRET, BODY)
    with pytest.raises(InvalidSignature):
        verify(SECRET, {**headers, TIMESTAMP_HEADER: timestamp}, BODY)


def test_verify_signed_huge_timestamp_is_invalid_not_an_overflow() -> None:
    """Even correctly signed, a timestamp far in the future is refused as a signature."""
    huge = 10**300
    headers = {TIMESTAMP_HEADER: str(huge), SIGNATURE_HEADER: sign(SECRET, huge, BODY)}
    with pytest.raises(InvalidSignature, match="malformed"):
        verify(SECRET, headers, BODY)
