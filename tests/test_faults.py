"""The fault suite: a cluster fleet (every process kind twice) under a stream of faxes of
mixed priorities while every kind of process is SIGKILLed, Redis restarts (SIGTERM and
SIGKILL), a site worker freezes past its lease and a site drops out, then an
independent count (the far ends' call records) of what happened.

``make test`` runs a short version; ``make faults`` a long one
(``FAXFLEET_FAULT_SECONDS``, default 600). The figures go to docs/reliability.md."""

from __future__ import annotations

import os

import pytest

from tests.fault_rig import FaultRun

pytestmark = [pytest.mark.fleet, pytest.mark.faults]

REDIS_KINDS = ["single"] + (["sentinel"] if os.environ.get("FAXFLEET_FAULT_SENTINEL") else [])
"""One Redis (restarted, killed) always; a Sentinel group (masters killed and failed
over) in ``make faults``: the failover itself is drilled in tests/test_sentinel.py."""


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("redis_kind", REDIS_KINDS)
def test_no_fax_lost_sent_twice_stuck_or_leaked_under_faults(tmp_path, redis_kind) -> None:
    seconds = float(os.environ.get("FAXFLEET_FAULT_SECONDS", "90"))
    every = float(os.environ.get("FAXFLEET_FAULT_EVERY", "6"))
    sentinel = redis_kind == "sentinel"
    with FaultRun(tmp_path, seconds=seconds, every=every, sentinel=sentinel) as run:
        report = run.run(settle=float(os.environ.get("FAXFLEET_FAULT_SETTLE", "180")))
    print()
    print("\n".join(report.lines()))
    if sum(report.faults.values()) >= len(run.kinds):  # the cycle went all the way round
        assert set(report.faults) == set(run.kinds), report.faults
    assert report.faxes > 0
    summary = "\n".join(report.lines())
    assert report.lost == [], summary
    assert report.stuck == [], summary
    assert report.sent_twice == [], summary
    assert report.done_not_received == [], summary
    assert report.leaked_slots == 0, summary
    assert report.leases_left == 0, summary
    assert report.notified_twice == [], summary
    assert report.not_notified == [], summary
    assert report.states.get("done", 0) > report.faxes // 2
