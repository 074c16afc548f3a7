"""Dispatcher benchmark (PostgreSQL): prints figures, asserts nothing.

1. messages dispatched per second through the console channel for 10,000 due rows;
2. the dispatcher's tick time with 1,000 vs 1,000,000 rows not yet due (it must stay flat:
   `ix_messages_due` on (status, next_attempt_at) means a tick reads only due rows).

    .venv/bin/python bench/dispatch.py            # BENCH_DATABASE_URL overrides the server
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not bench/ (and its modules)

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_database() -> str:
    """A new PostgreSQL database for this run (dropped at exit)."""
    import atexit

    from tests.support.pgtools import private_database

    url, drop = private_database(SERVER, "bench")
    atexit.register(drop)
    return url


def tick(out, now: datetime, enqueue) -> int:
    """One pass of the four beat entries (stale sends, check-in timers, pending replies, due sends),
    as the old single dispatcher tick did; returns how many rows were handed to `enqueue`."""
    from worker.jobs import periodic
    from worker.outbound import dispatch

    periodic.stale_sends(out, now)
    periodic.checkin_timers(out.ctx, now)
    periodic.pending_replies(out.ctx, now)
    return dispatch.dispatch_due(out, now, enqueue)


def main() -> None:
    url = fresh_database()
    os.environ.update(LOG_LEVEL="WARNING", DATABASE_URL=url, BROKER_URL="memory://", CLINIC_NAME="Bench Clinic",
                      CLINIC_PHONE="(212) 555-0100", SECRET_KEY="bench")
    import logging

    from sqlalchemy import text

    from worker.channels import ConsoleChannel
    from worker.core.config import load_settings
    from worker.core.context import build_context
    from worker.core.db import Database
    from worker.core.migrate import upgrade
    from worker.outbound import dispatch
    from worker.outbound.runtime import build_outbound

    logging.basicConfig(level=logging.WARNING)

    database = Database(url)
    upgrade(database)
    engine = database.engine
    now = datetime(2027, 6, 10, 15, 0, tzinfo=UTC)
    sink = io.StringIO()
    channels = {"sms": ConsoleChannel("sms", sink), "email": ConsoleChannel("email", sink)}
    out = build_outbound(build_context(load_settings(), database), channels)

    def insert(count: int, offset_sql: str, prefix: str) -> None:
        with engine.begin() as conn:
            conn.execute(text(f"""
                INSERT INTO messages (dedupe_key, kind, patient_id, step, part, recipient, channel, to_address,
                    template, context, status, scheduled_for, next_attempt_at, attempts, created_at, updated_at)
                SELECT '{prefix}' || g, 'alert', 1, NULL, 0, 'oncall', 'sms', '+12125550190', 'oncall_alert',
                    '{{"flag_url": "https://aftercare.example.org/flags/1"}}', 'scheduled',
                    :now + {offset_sql}, :now + {offset_sql}, 0, :now, :now
                FROM generate_series(1, :n) AS g"""), {"now": now, "n": count})
            conn.execute(text("ANALYZE messages"))

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO patients (id, first_name, last_name, timezone, language, preferred_channel,"
                          " sms_consent, email_consent, phq9_by_sms, created_at) VALUES (1, 'Bench', '', "
                          "'America/New_York', 'en', 'sms', true, true, false, now())"))

    # 1. throughput: 10,000 due rows through the console channel, in ticks of 500, with 1 and
    #    with 8 concurrent senders (what a worker with --concurrency 8 does)
    from concurrent.futures import ThreadPoolExecutor

    for senders in (1, 8):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM messages"))
        insert(10_000, "(g % 600) * interval '-1 second'", "due-")
        pool = ThreadPoolExecutor(senders)
        t0 = time.perf_counter()
        while True:
            futures = []
            enqueued = tick(out, now, lambda mid, att, futures=futures, pool=pool: futures.append(
                pool.submit(dispatch.send_message, out, mid, att, now)))
            [f.result() for f in futures]
            if not enqueued:
                break
        elapsed = time.perf_counter() - t0
        pool.shutdown()
        with engine.connect() as conn:
            done = conn.execute(text("SELECT count(*) FROM messages WHERE status = 'sent'")).scalar()
        print(f"dispatch throughput, {senders} sender(s): {done} messages sent in {elapsed:.1f} s = "
              f"{done / elapsed:,.0f} messages/s (console channel, PostgreSQL with fsync on)")

    # 2. tick time vs rows waiting in the future
    def tick_time(rounds: int = 30) -> float:
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            tick(out, now, lambda mid, att: None)
            samples.append(time.perf_counter() - t)
        return statistics.median(samples) * 1000

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM messages"))
    insert(1_000, "(g + 60) * interval '1 minute'", "future-a-")
    small = tick_time()
    insert(999_000, "(g + 60) * interval '1 second'", "future-b-")
    large = tick_time()
    with engine.connect() as conn:
        plan = conn.execute(text("EXPLAIN SELECT id FROM messages WHERE status = 'scheduled' "
                                 "AND next_attempt_at <= :now ORDER BY next_attempt_at LIMIT 500"),
                            {"now": now}).scalars().all()
    print(f"tick time (median of 30): {small:.2f} ms with 1,000 rows not yet due; "
          f"{large:.2f} ms with 1,000,000 (ratio {large / small:.2f})")
    print("due-rows query plan: " + plan[0].strip() + (" / " + plan[1].strip() if len(plan) > 1 else ""))


if __name__ == "__main__":
    main()
