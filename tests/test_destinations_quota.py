"""Daily page quotas counted in a real Redis (scheduler/allowance.py), and what the
lifecycle does with a fax whose rendered size does not fit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import redis

from faxfleet.destinations import FleetPolicy, TenantPolicy
from faxfleet.messages import (
    Cause,
    DocumentInfo,
    FaxStatus,
    JobState,
    RecipientStatus,
    RenderDone,
    Resolution,
    now,
)
from faxfleet.settings import Settings
from scheduler.allowance import (
    Allowance,
    day_key,
    fax_key,
    policy_key,
    seconds_to_midnight,
    utc_day,
)
from scheduler.lifecycle import Lifecycle, Route
from scheduler.store import Draft

S = JobState


def allowance(r: redis.Redis, quota: int | None = 10) -> Allowance:
    return Allowance(r, FleetPolicy.from_settings(Settings(daily_page_quota=quota)), 3600)


def fax(job_id: str, recipients: int = 1, tenant: str = "acme") -> FaxStatus:
    created = now()
    return FaxStatus(
        id=job_id,
        tenant=tenant,
        state=S.RENDERING,
        priority=5,
        resolution=Resolution.FINE,
        home_site="paris",
        created_at=created,
        kill_at=created + timedelta(days=1),
        documents=[DocumentInfo(name="a.txt", content_type="text/plain", size=3)],
        recipients=[
            RecipientStatus(index=i, number=f"+3314268530{i}", state=S.RENDERING)
            for i in range(recipients)
        ],
    )


def test_reserve_counts_up_to_the_quota_and_no_further(r: redis.Redis) -> None:
    a = allowance(r, quota=10)
    rules = a.rules("acme")
    assert a.reserve(rules, "fx_1", 4).ok
    assert a.reserve(rules, "fx_2", 6).ok
    refused = a.reserve(rules, "fx_3", 1)
    assert (refused.ok, refused.used, refused.limit) == (False, 10, 10)
    assert a.used("acme") == 10
    assert not r.exists(fax_key("fx_3"))
    # Another tenant has its own count; a tenant policy its own quota.
    assert a.reserve(a.rules("globex"), "fx_4", 10).ok
    a.set_policy("acme", TenantPolicy(daily_pages=12))
    assert a.reserve(a.rules("acme"), "fx_5", 2).ok
    assert a.used("acme") == 12 and a.used("globex") == 10
    # An administrator's override is counted, never refused.
    assert a.reserve(a.rules("acme"), "fx_6", 5, override=True).ok
    assert a.used("acme") == 17


def test_release_gives_back_once(r: redis.Redis) -> None:
    a = allowance(r)
    rules = a.rules("acme")
    a.reserve(rules, "fx_1", 4)
    assert a.release("fx_1") == 4
    assert a.release("fx_1") == 0
    assert a.used("acme") == 0
    assert a.release("fx_never") == 0


def test_concurrent_reservations_never_pass_the_quota(r: redis.Redis) -> None:
    a = allowance(r, quota=50)
    rules = a.rules("acme")

    def one(i: int) -> bool:
        return a.reserve(rules, f"fx_{i}", 3).ok

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(40)))
    assert results.count(True) == 16  # 16 * 3 = 48; a 17th would make 51
    assert a.used("acme") == 48


def test_settle_charges_the_true_size_once(r: redis.Redis) -> None:
    a = allowance(r, quota=10)
    rules = a.rules("acme")
    assert a.reserve(rules, "fx_1", 2).ok  # 1 document, 2 recipients
    assert a.settle(fax("fx_1", recipients=2), pages=3) is None
    assert a.used("acme") == 6
    assert a.settle(fax("fx_1", recipients=2), pages=3) is None  # the event again
    assert a.used("acme") == 6
    assert a.release("fx_1") == 0  # settled: nothing to give back

    assert a.reserve(rules, "fx_2", 1).ok
    assert a.used("acme") == 7
    reason = a.settle(fax("fx_2"), pages=5)
    assert reason == (
        "daily page quota of tenant acme exceeded: 6 of 10 pages used today (UTC), this fax "
        "needs 5 (pages times recipients)"
    )
    assert a.used("acme") == 6  # its reservation given back
    assert a.settle(fax("fx_2"), pages=5) == reason  # the same answer again, no change
    assert a.used("acme") == 6

    assert a.reserve(rules, "fx_3", 1, override=True).ok
    assert a.settle(fax("fx_3"), pages=50) is None
    assert a.used("acme") == 56

    # Submitted before quotas existed (no reservation): not refused, not counted.
    assert a.settle(fax("fx_old"), pages=500) is None
    assert a.used("acme") == 56


def test_unlimited_tenants_are_counted(r: redis.Redis) -> None:
    a = allowance(r, quota=None)
    rules = a.rules("acme")
    assert a.reserve(rules, "fx_1", 1000).ok
    assert a.settle(fax("fx_1"), pages=2000) is None
    assert a.used("acme") == 2000
    assert r.ttl(day_key("acme", utc_day())) > 86400


def test_policies_are_stored_per_tenant(r: redis.Redis) -> None:
    a = allowance(r)
    assert a.policy("acme") == TenantPolicy()
    a.set_policy("acme", TenantPolicy(allow_types=["premium_rate"], daily_pages=3))
    assert a.rules("acme").daily_pages == 3
    assert "premium_rate" not in a.rules("acme").barred_types
    assert "premium_rate" in a.rules("globex").barred_types
    assert r.exists(policy_key("acme"))
    assert a.delete_policy("acme")
    assert a.rules("acme").daily_pages == 10


def test_retry_after_is_the_next_utc_midnight() -> None:
    assert seconds_to_midnight(datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC)) == 61
    assert seconds_to_midnight(datetime(2026, 3, 1, 0, 0, 0, tzinfo=UTC)) == 86401


def test_a_fax_over_quota_fails_before_any_call() -> None:
    lc = Lifecycle(Settings())
    draft = Draft(fax("fx_1", recipients=2))
    ev = RenderDone(job_id="fx_1", pages=3, at=now())
    effects = lc.on_render_done(draft, ev, "daily page quota of tenant acme exceeded")
    assert not any(isinstance(e, Route) for e in effects)
    assert [rc.state for rc in draft.status.recipients] == [S.FAILED, S.FAILED]
    assert {rc.cause for rc in draft.status.recipients} == {Cause.QUOTA_EXCEEDED}
    assert draft.status.cause == Cause.QUOTA_EXCEEDED
    assert draft.status.pages == 3
    assert draft.recipient(0).detail == "daily page quota of tenant acme exceeded"

    within = Draft(fax("fx_2"))
    effects = lc.on_render_done(within, RenderDone(job_id="fx_2", pages=3, at=now()), None)
    assert any(isinstance(e, Route) for e in effects)
    assert within.recipient(0).state == S.ROUTING
