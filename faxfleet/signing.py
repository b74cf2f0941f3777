"""HMAC-SHA256 signatures of result callbacks, shared by the sender and the receivers.

The home site's scheduler signs every callback it POSTs; business applications (through
the Python client) and the tests verify them with :func:`verify`. The signed message is
``f"{timestamp}."`` followed by the raw body, so a captured request cannot be replayed
with another body, nor replayed later than ``tolerance_seconds``.

Headers::

    X-Faxfleet-Timestamp: 1767225600
    X-Faxfleet-Signature: v1=<hex HMAC-SHA256>

The signature header may hold several comma-separated ``v1=`` values (for instance while a
secret is being rotated); the request is valid when any of them matches.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Faxfleet-Signature"
TIMESTAMP_HEADER = "X-Faxfleet-Timestamp"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300.0
MAX_TIMESTAMP_DIGITS = 15


class InvalidSignature(ValueError):
    """A callback whose signature cannot be trusted; the message says why."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value of ``body`` sent at ``timestamp`` (Unix seconds)."""
    message = f"{int(timestamp)}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers to send with ``body`` (timestamp defaults to the current time)."""
    timestamp = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for dicts, ``httpx.Headers``, Starlette headers
    and ``http.client.HTTPMessage`` alike."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check the signature of a received callback; raise :class:`InvalidSignature` if the
    headers are missing or malformed, the timestamp is outside ``tolerance_seconds`` of
    ``now`` (either way), or no signature matches ``body``."""
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    if raw_timestamp is None or not raw_timestamp.strip():
        raise InvalidSignature(f"missing {TIMESTAMP_HEADER} header")
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if raw_signature is None or not raw_signature.strip():
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")

    text = raw_timestamp.strip()
    # Unix seconds in ASCII digits, no sign, no "_", no other script's digits; at most 15
    # digits, so that the arithmetic below cannot overflow a float.
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS):
        shown = raw_timestamp if len(raw_timestamp) <= 40 else raw_timestamp[:40] + "..."
        raise InvalidSignature(f"malformed {TIMESTAMP_HEADER} header {shown!r}")
    timestamp = int(text)
    current = time.time() if now is None else now
    age = current - timestamp
    if abs(age) > tolerance_seconds:
        raise InvalidSignature(
            f"stale timestamp: {age:+.0f}s from now, tolerance is {tolerance_seconds:g}s"
        )

    candidates = [part.strip() for part in raw_signature.split(",") if part.strip()]
    if not any(part.startswith(f"{SCHEME}=") for part in candidates):
        raise InvalidSignature(f"no {SCHEME}= signature in {SIGNATURE_HEADER} header")
    expected = sign(secret, timestamp, body).encode()
    matched = False
    for candidate in candidates:
        # Compare every candidate (no early exit) in constant time.
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise InvalidSignature("bad signature")
