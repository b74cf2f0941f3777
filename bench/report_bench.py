"""Cost report speed: every record read into Python and grouped there (the old way),
against PostgreSQL's ``GROUP BY`` and the journal's faster grouping (the new way).

Run: ``.venv/bin/python bench/report_bench.py [--sizes 10000,100000,300000] [--runs 3]``
(``--quick``: 2,000 and 20,000 records).

For each size N, N call records (four sites, three tenants, three currencies, some
unpriced, spread over 60 days) are journalled in a private ``redis-server`` on a free
port and copied (``COPY``) into a private PostgreSQL cluster (``tests/pg_cluster.py``:
its own ``initdb`` on a free port); the machine's Redis and PostgreSQL are never used.
Then ``by=site`` and ``by=day`` over the whole range are made four ways, each in a fresh
child process so its peak memory (``VmHWM``, the peak resident set of the process since
its ``exec``: imports, connections and the report; ``ru_maxrss`` would count the
parent's pages from before the ``exec``) is its own:

* ``pg-records``: ``DatabaseCalls.calls`` + :func:`legacy_aggregate` (the old way);
* ``pg-group-by``: ``DatabaseCalls.cost_report`` (SQL ``GROUP BY``);
* ``journal-records``: ``JournalCalls.calls`` + :func:`legacy_aggregate` (the old way);
* ``journal-grouped``: ``JournalCalls.cost_report`` (``aggregate`` with plain sums).

Each child makes its report ``--runs`` times (after one warm-up) and prints the median;
every child checks its report equals the others' (same JSON). Ratios are against the old
way of the same store in the same run, so they hold on a machine other than this one
better than the absolute times do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
import redis  # noqa: E402
from submit_bench import machine_info  # noqa: E402

from faxfleet import keys, reports  # noqa: E402
from faxfleet.accounting import CallRecord  # noqa: E402
from faxfleet.redis_server import RedisServer  # noqa: E402
from faxfleet.reports import CostReport, CostRow  # noqa: E402
from scheduler.accounting import db  # noqa: E402
from tests.pg_cluster import PgCluster  # noqa: E402

WAYS = ("pg-records", "pg-group-by", "journal-records", "journal-grouped")
OLD = {"pg-group-by": "pg-records", "journal-grouped": "journal-records"}
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def generate(n: int, seed: int = 7) -> list[CallRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = T0 + timedelta(seconds=rng.uniform(0, 60 * 86400))
        connected = rng.random() < 0.8
        seconds = Decimal(rng.randint(5_000, 300_000)) / 1000
        priced = rng.random() < 0.9
        cost = (Decimal(rng.randint(0, 2_000_000)) / 1_000_000).quantize(Decimal("0.000001"))
        pages = rng.randint(1, 5) if connected else 0
        out.append(
            CallRecord(
                call_id=f"fx_{i}:0:1",
                job_id=f"fx_{i}",
                recipient=0,
                attempt=1,
                site=rng.choice(("paris", "newyork", "london", "tokyo")),
                line="l1",
                number="+33142000000",
                destination=rng.choice(("+33 FR", "+1 US", "+44 GB")),
                started_at=start,
                ended_at=start + timedelta(seconds=float(seconds)),
                duration_seconds=seconds,
                pages_sent=pages,
                pages_confirmed=pages,
                pages_total=5,
                ok=connected and rng.random() < 0.9,
                connected=connected,
                cause=None,
                outcome="ok",
                cost=(cost if connected else Decimal("0.000000")) if priced else None,
                currency=rng.choice(("EUR", "USD", "GBP")) if priced else None,
                billed_seconds=None,
                tariff=None,
                tenant=rng.choice(("acme", "globex", "initech")),
                user=None,
                priority=5,
                route_reason=None,
                home_site="paris",
                recorded_at=start + timedelta(seconds=float(seconds)),
            )
        )
    out.sort(key=lambda x: x.ended_at)
    return out


def load(records: list[CallRecord], r: redis.Redis, pg_url: str) -> None:
    """Journal the records (as the scheduler does: ids are the end times) and COPY them
    into ``calls`` (the copier's INSERTs would take longer than the benchmark)."""
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i, x in enumerate(records):
        ms = int(x.ended_at.timestamp() * 1000)
        pipe.xadd(keys.ACCT_CALLS, {"r": x.model_dump_json()}, id=f"{ms}-{i}")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    columns = [c.name for c in db.calls.columns]
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("TRUNCATE calls")
        with conn.cursor().copy(f"COPY calls ({', '.join(columns)}) FROM STDIN") as copy:
            for i, x in enumerate(records):
                row = db.row(x, f"0-{i}")
                copy.write_row([row[c] for c in columns])
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE calls")


def legacy_aggregate(records: Iterable[CallRecord], by: str) -> CostReport:
    """The grouping as reports did it before (whole range, no tenant): a pydantic
    ``CostRow`` updated field by field for every record, in its group and the total."""
    rows: dict[str, CostRow] = {}
    total = CostRow(key="total")
    for rec in records:
        key = reports.group_of(rec, by)
        for row in (rows.setdefault(key, CostRow(key=key)), total):
            row.calls += 1
            row.connected += int(rec.connected)
            row.completed += int(rec.ok)
            row.seconds += rec.duration_seconds
            row.pages += rec.pages_sent
            if rec.cost is None or rec.currency is None:
                row.unpriced += 1
            else:
                row.cost[rec.currency] = row.cost.get(rec.currency, Decimal(0)) + rec.cost
    for row in [*rows.values(), total]:
        row.cost = {c: row.cost[c] for c in sorted(row.cost)}
    if by == "day":
        reports._fill_days(rows, None, None)
    return CostReport(by=by, rows=[rows[k] for k in sorted(rows)], total=total)


def child(way: str, by: str, runs: int, pg_url: str, redis_url: str) -> None:
    """One way, in this fresh process: the median time, and the report for the check."""
    from scheduler.accounting.stores import DatabaseCalls, JournalCalls

    engine = db.make_engine(pg_url)
    database = DatabaseCalls(engine)
    journal = JournalCalls(redis.Redis.from_url(redis_url))

    def make() -> CostReport:
        if way == "pg-records":
            return legacy_aggregate(database.calls(None, None, None), by)
        if way == "pg-group-by":
            return database.cost_report(by, None, None, None)
        if way == "journal-records":
            return legacy_aggregate(journal.calls(None, None, None), by)
        return journal.cost_report(by, None, None, None)

    got = make()  # warm-up (connections, imports)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        got = make()
        times.append(time.perf_counter() - t)
    status = Path("/proc/self/status").read_text()
    hwm_kib = int(status.split("VmHWM:")[1].split()[0])  # this process's peak RSS
    print(
        json.dumps(
            {
                "median": statistics.median(times),
                "peak_mib": hwm_kib / 1024,
                "report": got.model_dump_json(),
            }
        )
    )


def measure(way: str, by: str, runs: int, pg_url: str, redis_url: str) -> dict:
    cmd = [sys.executable, __file__, "--child", way, by, str(runs), pg_url, redis_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{way} by={by} failed ({proc.returncode})")
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 records")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, by, runs, pg_url, redis_url = args.child
        child(way, by, int(runs), pg_url, redis_url)
        return
    sizes = [2000, 20000] if args.quick else [int(s) for s in args.sizes.split(",")]
    print("machine:", ", ".join(f"{k} {v}" for k, v in machine_info().items()))
    print(f"runs per figure: {args.runs} (median), after one warm-up; each way in its own process")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ff-report-bench-")))
        server = RedisServer(tmp / "redis").start()
        stack.callback(server.stop)
        cluster = PgCluster().start()
        stack.callback(cluster.destroy)
        db.upgrade(db.make_engine(cluster.url))
        r = redis.Redis.from_url(server.url)
        for n in sizes:
            t = time.perf_counter()
            load(generate(n), r, cluster.url)  # the records are freed before measuring
            print(f"\nN={n:,} records (generated and loaded in {time.perf_counter() - t:.0f} s)")
            print(f"  {'by':4} {'way':16} {'median s':>9} {'x faster':>9} {'peak RSS MiB':>13}")
            for by in ("site", "day"):
                results = {w: measure(w, by, args.runs, cluster.url, server.url) for w in WAYS}
                if len({x["report"] for x in results.values()}) != 1:
                    raise SystemExit(f"by={by}: the four ways disagree")
                for way in WAYS:
                    x = results[way]
                    ratio = (
                        f"{results[OLD[way]]['median'] / x['median']:.1f}" if way in OLD else "1.0"
                    )
                    print(f"  {by:4} {way:16} {x['median']:9.3f} {ratio:>9} {x['peak_mib']:13.0f}")
        print("\nthe four ways gave identical reports at every size")


if __name__ == "__main__":
    main()
