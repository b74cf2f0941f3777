"""Retry rules: pure decisions from an attempt's outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faxfleet.messages import Cause
from faxfleet.settings import Settings
from scheduler.retry import (
    DIAL_CAUSES,
    NOT_A_FAX_LIMIT,
    Counters,
    RetryRules,
    counts_as_dial,
    decide,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAR = NOW + timedelta(days=30)

RULES = RetryRules(
    max_dials=5,
    max_tries=3,
    base_delay={
        Cause.BUSY: 100.0,
        Cause.NO_ANSWER: 200.0,
        Cause.REMOTE_DISCONNECTED: 50.0,
        Cause.PROTOCOL_ERROR: 40.0,
    },
    default_delay=70.0,
    backoff_factor=2.0,
    max_delay=500.0,
    time_scale=0.5,
)


def delay_of(cause: Cause, counters: Counters, rules: RetryRules = RULES) -> float:
    decision = decide(cause, counters, NOW, FAR, rules)
    assert decision.retry_at is not None, decision
    assert decision.final_cause is None
    return (decision.retry_at - NOW).total_seconds()


def test_busy_retried_after_base_delay_times_time_scale() -> None:
    assert delay_of(Cause.BUSY, Counters(dials=1, tries=0)) == pytest.approx(100.0 * 0.5)


def test_busy_with_default_settings() -> None:
    rules = RetryRules.from_settings(Settings(time_scale=0.01))
    assert delay_of(Cause.BUSY, Counters(1, 0), rules) == pytest.approx(180 * 0.01)


@pytest.mark.parametrize(
    ("cause", "counters", "expected"),
    [
        (Cause.BUSY, Counters(1, 0), 100 * 0.5),
        (Cause.BUSY, Counters(2, 0), 200 * 0.5),
        (Cause.BUSY, Counters(3, 0), 400 * 0.5),
        (Cause.BUSY, Counters(4, 0), 500 * 0.5),  # 800 capped at max_delay
        (Cause.BUSY, Counters(1, 2), 100 * 0.5),  # tries do not grow a dial delay
        (Cause.NO_ANSWER, Counters(2, 0), 400 * 0.5),
        (Cause.NO_ANSWER, Counters(3, 0), 500 * 0.5),
        (Cause.REMOTE_DISCONNECTED, Counters(0, 1), 50 * 0.5),
        (Cause.REMOTE_DISCONNECTED, Counters(3, 2), 100 * 0.5),  # dials do not grow it
        (Cause.PROTOCOL_ERROR, Counters(0, 2), 80 * 0.5),
        (Cause.PAGE_REJECTED, Counters(0, 1), 70 * 0.5),  # default delay
        (Cause.PAGE_REJECTED, Counters(0, 2), 140 * 0.5),
    ],
)
def test_backoff_per_counter_and_cap(cause: Cause, counters: Counters, expected: float) -> None:
    assert delay_of(cause, counters) == pytest.approx(expected)


def test_backoff_grows_then_caps() -> None:
    delays = [delay_of(Cause.BUSY, Counters(n, 0)) for n in range(1, 5)]
    assert delays[0] < delays[1] < delays[2] <= delays[3]
    assert delays[1] == pytest.approx(delays[0] * RULES.backoff_factor)
    assert max(delays) == pytest.approx(RULES.max_delay * RULES.time_scale)


@pytest.mark.parametrize("cause", [Cause.BUSY, Cause.NO_ANSWER, Cause.PROTOCOL_ERROR])
def test_too_many_dials(cause: Cause) -> None:
    decision = decide(cause, Counters(dials=5, tries=0), NOW, FAR, RULES)
    assert decision.retry_at is None
    assert decision.final_cause == Cause.TOO_MANY_DIALS
    assert "5 dials" in (decision.detail or "")


def test_one_dial_below_the_limit_is_retried() -> None:
    assert decide(Cause.BUSY, Counters(4, 0), NOW, FAR, RULES).retry_at is not None


@pytest.mark.parametrize("cause", [Cause.REMOTE_DISCONNECTED, Cause.PAGE_REJECTED])
def test_too_many_tries(cause: Cause) -> None:
    decision = decide(cause, Counters(dials=1, tries=3), NOW, FAR, RULES)
    assert decision.retry_at is None
    assert decision.final_cause == Cause.TOO_MANY_TRIES
    assert decide(cause, Counters(dials=1, tries=2), NOW, FAR, RULES).retry_at is not None


@pytest.mark.parametrize(
    "cause", [Cause.INVALID_NUMBER, Cause.RENDER_ERROR, Cause.CANCELLED, Cause.KILL_TIME]
)
def test_final_causes_fail_at_once(cause: Cause) -> None:
    decision = decide(cause, Counters(0, 0), NOW, FAR, RULES)
    assert decision.retry_at is None
    assert decision.final_cause == cause


def test_not_a_fax_retried_once_then_final() -> None:
    first = decide(Cause.NOT_A_FAX, Counters(0, 1, not_a_fax=1), NOW, FAR, RULES)
    assert first.retry_at is not None
    second = decide(Cause.NOT_A_FAX, Counters(0, 2, not_a_fax=NOT_A_FAX_LIMIT), NOW, FAR, RULES)
    assert second.retry_at is None
    assert second.final_cause == Cause.NOT_A_FAX


def test_retry_past_kill_time_fails_with_kill_time() -> None:
    kill_at = NOW + timedelta(seconds=49)  # busy would retry after 50 s
    decision = decide(Cause.BUSY, Counters(1, 0), NOW, kill_at, RULES)
    assert decision.retry_at is None
    assert decision.final_cause == Cause.KILL_TIME
    assert "busy" in (decision.detail or "")
    exactly = decide(Cause.BUSY, Counters(1, 0), NOW, NOW + timedelta(seconds=50), RULES)
    assert exactly.final_cause == Cause.KILL_TIME
    later = decide(Cause.BUSY, Counters(1, 0), NOW, NOW + timedelta(seconds=51), RULES)
    assert later.retry_at == NOW + timedelta(seconds=50)


@pytest.mark.parametrize(
    ("cause", "connected", "expected"),
    [
        (Cause.BUSY, False, True),
        (Cause.BUSY, True, True),
        (Cause.NO_ANSWER, False, True),
        (Cause.NO_DIALTONE, False, True),
        (Cause.LINE_UNAVAILABLE, False, True),
        (Cause.NO_SITE, True, True),
        (Cause.NO_CARRIER, False, True),
        (Cause.NO_CARRIER, True, False),
        (Cause.REMOTE_DISCONNECTED, True, False),
        (Cause.REMOTE_DISCONNECTED, False, True),
        (Cause.PROTOCOL_ERROR, True, False),
        (Cause.PAGE_REJECTED, True, False),
        (Cause.TRAINING_FAILED, True, False),
        (Cause.NOT_A_FAX, True, False),
    ],
)
def test_counts_as_dial(cause: Cause, connected: bool, expected: bool) -> None:
    assert counts_as_dial(cause, connected) is expected


def test_dial_causes() -> None:
    assert Cause.BUSY in DIAL_CAUSES
    assert Cause.PROTOCOL_ERROR not in DIAL_CAUSES


def test_rules_from_settings() -> None:
    s = Settings(
        max_dials=7,
        max_tries=2,
        retry_busy_seconds=11,
        retry_no_answer_seconds=22,
        retry_no_carrier_seconds=33,
        retry_protocol_seconds=44,
        retry_line_seconds=55,
        retry_backoff_factor=3.0,
        retry_max_delay_seconds=999,
        time_scale=0.25,
    )
    rules = RetryRules.from_settings(s)
    assert rules.max_dials == 7
    assert rules.max_tries == 2
    assert rules.backoff_factor == 3.0
    assert rules.max_delay == 999
    assert rules.time_scale == 0.25
    assert rules.default_delay == 44
    assert rules.base_delay == {
        Cause.BUSY: 11,
        Cause.NO_ANSWER: 22,
        Cause.NO_DIALTONE: 55,
        Cause.LINE_UNAVAILABLE: 55,
        Cause.MODEM_NOT_RESPONDING: 55,
        Cause.NO_SITE: 55,
        Cause.NO_CARRIER: 33,
        Cause.PROTOCOL_ERROR: 44,
        Cause.TRAINING_FAILED: 44,
        Cause.PAGE_REJECTED: 44,
        Cause.REMOTE_DISCONNECTED: 44,
    }
    assert delay_of(Cause.NO_ANSWER, Counters(2, 0), rules) == pytest.approx(22 * 3 * 0.25)
