"""Per-cause retry rules: pure decisions from an attempt's outcome.

Two counters, as fax servers have long kept them:

* **dials**: calls that never connected (busy, no answer, no dial tone, no carrier before
  the handshake). Limited by ``max_dials``.
* **tries**: calls that connected but failed part-way (carrier lost, protocol error,
  page rejected). Limited by ``max_tries``.

Each cause has its own base delay, grown by ``backoff_factor`` per earlier failure of the
same counter and capped by ``max_delay``. Nothing is retried past the kill time. Causes
the far end or the document settle for good (not a fax machine twice, invalid number,
render error, cancelled) are final at once. Every delay is multiplied by ``time_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from faxfleet.messages import Cause
from faxfleet.settings import Settings

DIAL_CAUSES = frozenset(
    {
        Cause.BUSY,
        Cause.NO_ANSWER,
        Cause.NO_DIALTONE,
        Cause.LINE_UNAVAILABLE,
        Cause.MODEM_NOT_RESPONDING,
        Cause.NO_SITE,
    }
)
"""Attempts that never reached the far end's fax machine."""

FINAL_CAUSES = frozenset(
    {
        Cause.INVALID_NUMBER,
        Cause.RENDER_ERROR,
        Cause.CANCELLED,
        Cause.KILL_TIME,
        Cause.NO_ROUTE,
        Cause.QUOTA_EXCEEDED,
    }
)

NOT_A_FAX_LIMIT = 2
"""A voice answer is retried once (a person may have picked up a shared line)."""


@dataclass(frozen=True)
class RetryRules:
    max_dials: int = 12
    max_tries: int = 3
    base_delay: dict[Cause, float] = field(default_factory=dict)
    default_delay: float = 120.0
    backoff_factor: float = 1.5
    max_delay: float = 3600.0
    time_scale: float = 1.0

    @classmethod
    def from_settings(cls, s: Settings) -> RetryRules:
        return cls(
            max_dials=s.max_dials,
            max_tries=s.max_tries,
            base_delay={
                Cause.BUSY: s.retry_busy_seconds,
                Cause.NO_ANSWER: s.retry_no_answer_seconds,
                Cause.NO_DIALTONE: s.retry_line_seconds,
                Cause.LINE_UNAVAILABLE: s.retry_line_seconds,
                Cause.MODEM_NOT_RESPONDING: s.retry_line_seconds,
                Cause.NO_SITE: s.retry_line_seconds,
                Cause.NO_CARRIER: s.retry_no_carrier_seconds,
                Cause.PROTOCOL_ERROR: s.retry_protocol_seconds,
                Cause.TRAINING_FAILED: s.retry_protocol_seconds,
                Cause.PAGE_REJECTED: s.retry_protocol_seconds,
                Cause.REMOTE_DISCONNECTED: s.retry_protocol_seconds,
            },
            default_delay=s.retry_protocol_seconds,
            backoff_factor=s.retry_backoff_factor,
            max_delay=s.retry_max_delay_seconds,
            time_scale=s.time_scale,
        )


@dataclass(frozen=True)
class Counters:
    """What a recipient has used so far, *including* the attempt being judged."""

    dials: int
    tries: int
    not_a_fax: int = 0


@dataclass(frozen=True)
class Decision:
    retry_at: datetime | None
    """When to try again, or None when the recipient has failed for good."""
    final_cause: Cause | None = None
    detail: str | None = None


def counts_as_dial(cause: Cause, connected: bool) -> bool:
    return not connected or cause in DIAL_CAUSES


def decide(
    cause: Cause, counters: Counters, now: datetime, kill_at: datetime, rules: RetryRules
) -> Decision:
    """Retry ``cause`` later, or give up with the reason."""
    if cause in FINAL_CAUSES:
        return Decision(None, cause)
    if cause == Cause.NOT_A_FAX and counters.not_a_fax >= NOT_A_FAX_LIMIT:
        return Decision(None, cause, f"answered by a non-fax device {counters.not_a_fax} times")
    if counters.dials >= rules.max_dials:
        return Decision(None, Cause.TOO_MANY_DIALS, f"{counters.dials} dials, last: {cause}")
    if counters.tries >= rules.max_tries:
        return Decision(None, Cause.TOO_MANY_TRIES, f"{counters.tries} tries, last: {cause}")
    failures = counters.dials if cause in DIAL_CAUSES else counters.tries
    delay = rules.base_delay.get(cause, rules.default_delay)
    delay *= rules.backoff_factor ** max(0, failures - 1)
    delay = min(delay, rules.max_delay) * rules.time_scale
    retry_at = now + timedelta(seconds=delay)
    if retry_at >= kill_at:
        return Decision(None, Cause.KILL_TIME, f"kill time reached, last: {cause}")
    return Decision(retry_at)
