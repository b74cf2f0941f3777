"""Notification senders: the mail and the signed callback sent when a fax is settled.

These are plain I/O adapters used by the home site's scheduler once every recipient of a
fax is settled (done, failed, cancelled or outcome_uncertain), and once more when a fax
whose outcome was uncertain settles for good. They know nothing about
Celery: each call makes one attempt and raises :class:`NotifyError`, whose ``retryable``
flag tells the caller whether trying again later may succeed.
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from faxfleet import egress
from faxfleet.messages import FaxStatus, InboundFax, JobState, RecipientStatus
from faxfleet.settings import Settings
from faxfleet.signing import signature_headers

EVENT_SETTLED = "fax.settled"
JOB_HEADER = "X-Faxfleet-Job"
USER_AGENT = "faxfleet-notify/0.1"

_OUTCOME = {
    JobState.DONE: "delivered",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.OUTCOME_UNCERTAIN: "outcome uncertain",
}

_EXPLANATION = {
    JobState.OUTCOME_UNCERTAIN: (
        "The site lost track of the transmission: the far end may or may not have "
        "received the fax. It is not sent again automatically: check with the recipient, "
        "then resolve it as sent or have it sent again (faxfleet resolve). You will hear "
        "its final outcome."
    ),
}

_FINALLY = (
    "Its outcome was reported as uncertain earlier; this is its final outcome "
    "(see each recipient's detail for how it was settled)."
)


class NotifyError(Exception):
    """A notification that could not be delivered; ``retryable`` says whether another
    attempt later may succeed (network trouble, 4xx SMTP, 5xx/429 HTTP).

    The message is the full detail, for the log only. ``public`` is what the fax's history
    (which the tenant reads) says instead, such as ``failed: no answer``: for a callback it
    never carries the error text of the tenant-chosen address (connection refused, server
    disconnected, an internal service's answer), which would make the notifier a port
    scanner of the fleet's network."""

    def __init__(self, message: str, *, retryable: bool, public: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.public = public or f"failed: {message}"


# ----------------------------------------------------------------------------------------
# Mail

# What a fax's history says of a failed mail (the relay's address and errors go to the log).
BAD_ADDRESS = "failed: not a valid e-mail address"
NO_RELAY = "failed: the mail relay is unavailable"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _outcome(state: JobState) -> str:
    return _OUTCOME.get(state, state.value.replace("_", " "))


def _recipient_outcome(recipient: RecipientStatus, total_pages: int | None) -> str:
    """``delivered (3 pages)``, ``failed: busy``, ``cancelled``..."""
    outcome = _outcome(recipient.state)
    if recipient.state == JobState.DONE:
        pages = recipient.pages_confirmed or total_pages or 0
        return f"{outcome} ({_plural(pages, 'page')})"
    if recipient.cause is not None:
        return f"{outcome}: {recipient.cause.value}"
    return outcome


def _subject(status: FaxStatus) -> str:
    recipients = status.recipients
    if len(recipients) == 1:
        only = recipients[0]
        return f"Fax {status.id} to {only.number}: {_recipient_outcome(only, status.pages)}"
    counts: dict[str, int] = {}
    for recipient in recipients:
        label = _outcome(recipient.state)
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{count} {label}" for label, count in counts.items())
    return f"Fax {status.id} to {len(recipients)} recipients: {summary or _outcome(status.state)}"


def _pages_line(recipient: RecipientStatus, total_pages: int | None) -> str:
    if total_pages is None:
        return f"{recipient.pages_confirmed} confirmed"
    return f"{recipient.pages_confirmed} of {total_pages} confirmed"


def _recipient_block(position: int, recipient: RecipientStatus, total: int | None) -> list[str]:
    sent_from = recipient.site or "-"
    if recipient.site and recipient.line:
        sent_from = f"{recipient.site} (line {recipient.line})"
    lines = [
        f"{position}. {recipient.number}",
        f"   State:      {_outcome(recipient.state)}",
        f"   Pages:      {_pages_line(recipient, total)}",
        f"   Attempts:   {recipient.attempt} (dials: {recipient.dials}, tries: {recipient.tries})",
        f"   Cause:      {recipient.cause.value if recipient.cause else '-'}",
    ]
    if recipient.detail:
        lines.append(f"   Detail:     {recipient.detail}")
    lines.append(f"   Sent from:  site {sent_from}")
    if recipient.remote_id:
        lines.append(f"   Remote ID:  {recipient.remote_id}")
    if recipient.updated_at is not None:
        lines.append(f"   Settled at: {recipient.updated_at.isoformat(timespec='seconds')}")
    return lines


def was_uncertain(status: FaxStatus) -> bool:
    """Whether a fax now final was settled as ``outcome_uncertain`` before (read from its
    history, so ``status`` must have been read with it)."""
    return status.state != JobState.OUTCOME_UNCERTAIN and any(
        t.from_state == JobState.OUTCOME_UNCERTAIN for t in status.history
    )


def render_email(status: FaxStatus, site: str) -> EmailMessage:
    """The plain-text result mail of a settled fax (without From/To: see send_email): its
    outcome at the time of sending. A fax settled as ``outcome_uncertain`` is mailed again
    when it settles for good, and that mail says so."""
    lines = [
        f"Fax {status.id}: {_outcome(status.state)}",
        "",
        f"Tenant:     {status.tenant}",
    ]
    if status.user:
        lines.append(f"User:       {status.user}")
    if status.sender:
        lines.append(f"Sender:     {status.sender}")
    lines.append(f"Submitted:  {status.created_at.isoformat(timespec='seconds')}")
    if status.documents:
        names = ", ".join(doc.name for doc in status.documents)
        lines.append(f"Documents:  {names}")
    lines.append(f"Pages:      {status.pages if status.pages is not None else 'unknown'}")
    lines.append(f"Resolution: {status.resolution.value}")
    lines.append(f"Priority:   {status.priority}")
    if status.cause is not None:
        lines.append(f"Cause:      {status.cause.value}")
    if status.detail:
        lines.append(f"Detail:     {status.detail}")
    if status.tags:
        tags = ", ".join(f"{key}={value}" for key, value in sorted(status.tags.items()))
        lines.append(f"Tags:       {tags}")
    explanation = _EXPLANATION.get(status.state)
    if explanation is None and was_uncertain(status):
        explanation = _FINALLY
    if explanation:
        lines += ["", explanation]

    lines += ["", _plural(len(status.recipients), "recipient") + ":", ""]
    for position, recipient in enumerate(status.recipients, start=1):
        lines += _recipient_block(position, recipient, status.pages)
        lines.append("")

    lines.append(f"This notification was sent from home site {site} of the faxfleet.")

    msg = EmailMessage()
    msg["Subject"] = _subject(status)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=status.id, domain="faxfleet.invalid")
    msg[JOB_HEADER] = status.id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send_email(settings: Settings, to: str, status: FaxStatus, site: str) -> None:
    """Mail the result of ``status`` to ``to`` through the configured SMTP relay."""
    send_message(settings, to, render_email(status, site))


def send_message(settings: Settings, to: str, msg: EmailMessage) -> None:
    """Address ``msg`` to ``to`` and hand it to the configured SMTP relay (one attempt)."""
    try:
        msg["From"] = settings.smtp_from
        msg["To"] = to
    except ValueError as exc:  # a header with a line break or the like
        raise NotifyError(
            f"cannot address mail to {to!r}: {exc}", retryable=False, public=BAD_ADDRESS
        ) from exc
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    smtp = smtplib.SMTP(timeout=settings.notify_timeout_seconds)
    try:
        refused = _deliver(smtp, settings, msg, to)
    except smtplib.SMTPRecipientsRefused as exc:
        raise _refused(exc.recipients, where) from exc
    except smtplib.SMTPConnectError as exc:
        # The server would not talk to us right now (greeting other than 220).
        text = _decode(exc.smtp_error)
        raise NotifyError(
            f"SMTP {where} greeted {exc.smtp_code} {text}", retryable=True, public=NO_RELAY
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise NotifyError(f"SMTP {where}: {exc}", retryable=False, public=NO_RELAY) from exc
    except smtplib.SMTPResponseException as exc:
        # HELO, sender, data and authentication refusals: 4xx temporary, 5xx permanent.
        text = _decode(exc.smtp_error)
        raise NotifyError(
            f"SMTP {where} answered {exc.smtp_code} {text}",
            retryable=exc.smtp_code < 500,
            public=f"failed: the mail relay refused it ({exc.smtp_code})",
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        # Refused connection, timeout, TLS failure, server hung up.
        raise NotifyError(f"SMTP {where}: {exc!r}", retryable=True, public=NO_RELAY) from exc
    finally:
        smtp.close()
    if refused:
        raise _refused(refused, where)


def _deliver(
    smtp: smtplib.SMTP, settings: Settings, msg: EmailMessage, to: str
) -> dict[str, tuple[int, bytes]]:
    smtp.connect(settings.smtp_host, settings.smtp_port)
    if settings.smtp_starttls:
        smtp.starttls(context=ssl.create_default_context())
    if settings.smtp_user:
        smtp.login(settings.smtp_user, settings.smtp_password or "")
    refused = smtp.send_message(msg, from_addr=settings.smtp_from, to_addrs=[to])
    # The mail is accepted: a failing QUIT must not make the caller send it again.
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()
    return refused


def _decode(text: bytes | str) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def _refused(recipients: dict[str, tuple[int, bytes]], where: str) -> NotifyError:
    """A refused recipient is permanent on 5xx, temporary on 4xx."""
    parts = [f"{rcpt}: {code} {_decode(text)}" for rcpt, (code, text) in recipients.items()]
    permanent = all(code >= 500 for code, _ in recipients.values())
    codes = ", ".join(sorted({str(code) for code, _ in recipients.values()}))
    return NotifyError(
        f"SMTP {where} refused recipient {'; '.join(parts)}",
        retryable=not permanent,
        public=f"failed: recipient refused by the mail relay ({codes})",
    )


# ----------------------------------------------------------------------------------------
# Callback


def callback_body(status: FaxStatus, site: str) -> bytes:
    """The JSON body of the ``fax.settled`` callback (compact, without the history)."""
    document = {
        "event": EVENT_SETTLED,
        "fax": status.model_dump(mode="json", exclude={"history"}),
        "notified_by": site,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def post_callback(
    settings: Settings,
    url: str,
    status: FaxStatus,
    site: str,
    *,
    resolve: egress.Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST the signed ``fax.settled`` callback to ``url``; return the 2xx status code."""
    return post_signed(
        settings,
        url,
        callback_body(status, site),
        {JOB_HEADER: status.id},
        resolve=resolve,
        ssl_context=ssl_context,
    )


REFUSED = "refused: not a public address"
NO_ANSWER = "failed: no answer"
BAD_URL = "failed: not a valid http or https URL"
REDIRECTED = "failed: redirected (redirects are not followed)"


def post_signed(
    settings: Settings,
    url: str,
    body: bytes,
    extra: dict[str, str],
    *,
    resolve: egress.Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` (JSON) signed with the webhook secret; return the 2xx status code.

    Only to a public address, or one ``FAXFLEET_CALLBACK_ALLOW`` opens (faxfleet/egress.py):
    the host is resolved once (``resolve``, the system resolver by default) and the request
    goes to an address that was checked. Redirects are not followed."""
    try:
        egress.check_url(url)
    except egress.BadURL as exc:
        raise NotifyError(f"callback URL {url!r}: {exc}", retryable=False, public=BAD_URL) from exc
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **extra,
        **signature_headers(settings.webhook_secret, body),
    }
    guard = egress.Guard(settings.callback_allow_list, resolve or egress.system_resolve)
    try:
        with egress.client(guard, settings.notify_timeout_seconds, ssl_context) as client:
            response = client.post(url, content=body, headers=headers)
    except egress.Refused as exc:
        raise NotifyError(f"callback {url}: {exc}", retryable=False, public=REFUSED) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise NotifyError(f"callback URL {url!r}: {exc}", retryable=False, public=BAD_URL) from exc
    except httpx.TransportError as exc:
        # Connection refused, DNS failure, timeouts, connection reset, TLS failure.
        raise NotifyError(f"callback {url}: {exc!r}", retryable=True, public=NO_ANSWER) from exc

    code = response.status_code
    if 200 <= code < 300:
        return code
    reason = f"callback {url} answered {code} {response.reason_phrase}".rstrip()
    where = f" from {guard.connected}" if guard.connected is not None else ""
    reason += where
    if 300 <= code < 400:
        raise NotifyError(reason, retryable=False, public=REDIRECTED)
    # An HTTP status is the tenant's own server talking when the address is public; from
    # an address opened by the allow-list it would tell what runs inside: said generically.
    public = f"failed: answered HTTP {code}" if guard.connected_public else "failed: error answer"
    # 408 (request timeout) and 429 (too many requests) are the 4xx worth retrying.
    retryable = code >= 500 or code in (408, 429)
    raise NotifyError(reason, retryable=retryable, public=public)


# ----------------------------------------------------------------------------------------
# Received faxes


EVENT_RECEIVED = "fax.received"
INBOUND_HEADER = "X-Faxfleet-Inbound"


def _received_summary(fax: InboundFax) -> list[str]:
    outcome = "received" if fax.ok else "partly received"
    lines = [
        f"Fax {fax.id}: {outcome}, {_plural(fax.pages, 'page')}",
        "",
        f"From:       {fax.remote_id or 'unknown (no station id)'}",
        f"To:         {fax.called or '-'}",
        f"Pages:      {fax.pages}",
        f"Line:       {fax.line} (site {fax.site})",
        f"Received:   {fax.received_at.isoformat(timespec='seconds')}",
    ]
    if fax.tenant:
        lines.append(f"Tenant:     {fax.tenant}")
    if not fax.ok:
        lines.append(f"Cause:      {fax.cause.value if fax.cause else 'unknown'}")
        if fax.detail:
            lines.append(f"Detail:     {fax.detail}")
        lines += [
            "",
            "The call ended before the sender finished: the pages that arrived are "
            "attached. The sender may not know the fax is incomplete.",
        ]
    return lines


def render_inbound_email(fax: InboundFax, document: bytes | None, site: str) -> EmailMessage:
    """The mail announcing a received fax, the whole fax attached as one TIFF."""
    lines = _received_summary(fax)
    if document is None and fax.pages:
        lines += ["", "The fax itself is no longer stored and could not be attached."]
    lines += ["", f"This notification was sent from site {site} of the faxfleet."]
    msg = EmailMessage()
    sender = fax.remote_id or "unknown sender"
    partial = "" if fax.ok else f" (incomplete: {fax.cause.value if fax.cause else 'cut off'})"
    msg["Subject"] = f"Fax from {sender}: {_plural(fax.pages, 'page')}{partial}"
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=fax.id, domain="faxfleet.invalid")
    msg[INBOUND_HEADER] = fax.id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(lines) + "\n")
    if document:
        msg.add_attachment(document, maintype="image", subtype="tiff", filename=f"{fax.id}.tiff")
    return msg


def send_inbound_email(
    settings: Settings, to: str, fax: InboundFax, document: bytes | None, site: str
) -> None:
    """Mail a received fax to ``to`` (one attempt; raises :class:`NotifyError`)."""
    send_message(settings, to, render_inbound_email(fax, document, site))


def inbound_callback_body(fax: InboundFax, site: str) -> bytes:
    """The JSON body of the ``fax.received`` callback; the fax itself is fetched from
    ``document`` (``GET /v1/inbound/{id}.tiff`` with the tenant's key)."""
    document = {
        "event": EVENT_RECEIVED,
        "fax": fax.model_dump(mode="json", exclude={"notifications"}),
        "document": f"/v1/inbound/{fax.id}.tiff",
        "notified_by": site,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def post_inbound_callback(
    settings: Settings,
    url: str,
    fax: InboundFax,
    site: str,
    *,
    resolve: egress.Resolver | None = None,
) -> int:
    """POST the signed ``fax.received`` callback to ``url`` (same rules as result
    callbacks: public addresses or the allow-list); return the 2xx status code."""
    return post_signed(
        settings, url, inbound_callback_body(fax, site), {INBOUND_HEADER: fax.id}, resolve=resolve
    )
