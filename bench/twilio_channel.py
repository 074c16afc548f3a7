"""Benchmark: the dispatcher + Twilio channel against a fake Twilio on 127.0.0.1.

    .venv/bin/python bench/twilio_channel.py            # temp SQLite
    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python bench/twilio_channel.py

1. 5,000 due messages through ``dispatch_inline`` (claim, render, send via the SDK, record),
   TWILIO_MAX_MPS very high: messages/s.
2. 5,000 bare ``client.messages.create`` calls with the same SDK and server: the ceiling.
3. ~200 messages under TWILIO_MAX_MPS=20: the achieved rate as a fraction of 20, and the
   most sends seen in any one-second window.
On PostgreSQL a database of its own is created (and dropped) when the role may do so.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named twilio.py: its own directory must not shadow the `twilio` SDK package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

N_DISPATCH = int(os.environ.get("BENCH_N", "5000"))
N_BARE = int(os.environ.get("BENCH_N_BARE", "5000"))
N_PACED = int(os.environ.get("BENCH_N_PACED", "200"))
PACED_MPS = 20.0


def _database() -> tuple[str, callable]:
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        tmp = Path(tempfile.mkdtemp(prefix="aftercare-bench-"))
        return f"sqlite:///{tmp / 'bench.db'}", lambda: None
    if not url.startswith("postgresql"):
        return url, lambda: None
    from tests.support.pgtools import private_database

    return private_database(url, "bench")


def _runtime(database):
    """This process's composition root, from the environment as it is now (as a restarted process would)."""
    from worker.core.config import load_settings
    from worker.core.context import build_context
    from worker.outbound.runtime import build_outbound

    return build_outbound(build_context(load_settings(), database))


def _create_due(out, n: int, offset: int) -> None:
    from worker.care.scheduling import sync_session
    from worker.core.db import utcnow
    from worker.core.models import InfusionSession, Patient, SessionStatus

    now = utcnow()
    with out.ctx.db.scope() as db:
        for i in range(n):
            k = offset + i
            p = Patient(first_name="Alex", last_name=f"Bench{k}", phone=f"+12125550{100 + k % 100}",
                        email=f"bench{k}@example.org", timezone="America/New_York", language="en",
                        preferred_channel="sms", sms_consent=True, email_consent=True)
            s = InfusionSession(patient=p, scheduled_start=now - timedelta(hours=1),
                                ended_at=now - timedelta(seconds=5), driver_name="Sam", status=SessionStatus.completed)
            db.add_all([p, s])
            db.flush()
            sync_session(db, s, now, out.ctx.protocol)


def _dispatch_all(out) -> int:
    from worker.core.db import utcnow
    from worker.jobs.periodic import run_inline

    total = 0
    while True:
        res = run_inline(out, utcnow())
        total += res.sent
        if res.sent == 0:
            return total


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    from tests.support.fake_twilio import FROM_NUMBER, FakeTwilio

    fake = FakeTwilio().start()
    url, cleanup = _database()
    tmp = Path(tempfile.mkdtemp(prefix="aftercare-bench-proto-"))
    protocol = tmp / "protocol.yaml"
    protocol.write_text("quiet_hours: \"\"\nsteps:\n  - {name: tips, anchor: session_end, offset: 0s, to: patient,"
                        " channel: sms, template: recovery_tips, quiet_hours: false}\n")
    os.environ.update({
        "DATABASE_URL": url, "BROKER_URL": "", "PUBLIC_BASE_URL": "https://aftercare.example.org",
        "SECRET_KEY": "bench-secret", "CLINIC_NAME": "Northside Clinic", "CLINIC_PHONE": "(212) 555-0100",
        "FOLLOWUP_PROTOCOL": str(protocol), "TWILIO_MAX_MPS": "1000000", **fake.env(),
    })
    for k in ("SMTP_URL", "TWILIO_MESSAGING_SERVICE_SID"):
        os.environ.pop(k, None)
    from worker.core.db import Database

    database = Database(url)
    try:
        from worker.core.migrate import upgrade

        upgrade(database)
        out = _runtime(database)
        print(f"database: {url.split('@')[-1]}   fake Twilio: {fake.url}")

        # 1. through the dispatcher
        t = time.perf_counter()
        _create_due(out, N_DISPATCH, 0)
        print(f"created {N_DISPATCH} due messages in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        handled = _dispatch_all(out)
        elapsed = time.perf_counter() - t
        sent = len(fake.sent())
        assert handled == N_DISPATCH and sent == N_DISPATCH, (handled, sent)
        dispatch_rate = N_DISPATCH / elapsed
        print(f"1. dispatcher + Twilio channel: {N_DISPATCH} sent in {elapsed:.1f} s = {dispatch_rate:.0f} messages/s")

        # 2. the bare SDK against the same server
        from twilio.rest import Client

        client = Client(fake.account_sid, fake.auth_token)
        client.api.base_url = fake.url
        t = time.perf_counter()
        for i in range(N_BARE):
            client.messages.create(to="+12125550101", from_=FROM_NUMBER, body=f"bare {i}")
        elapsed = time.perf_counter() - t
        bare_rate = N_BARE / elapsed
        print(f"2. bare client.messages.create: {N_BARE} in {elapsed:.1f} s = {bare_rate:.0f} messages/s")
        print(f"   dispatcher / bare SDK = {dispatch_rate / bare_rate:.2f}")

        # 3. paced at TWILIO_MAX_MPS=20
        os.environ["TWILIO_MAX_MPS"] = str(PACED_MPS)
        out = _runtime(database)
        _create_due(out, N_PACED, N_DISPATCH)
        before = len(fake.create_requests())
        t = time.perf_counter()
        _dispatch_all(out)
        elapsed = time.perf_counter() - t
        stamps = sorted(r.at for r in fake.create_requests()[before:])
        assert len(stamps) == N_PACED, len(stamps)
        achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        window = max(sum(1 for s in stamps[i:] if s < t0 + 1.0) for i, t0 in enumerate(stamps))
        print(f"3. TWILIO_MAX_MPS={PACED_MPS:.0f}: {N_PACED} sent in {elapsed:.1f} s, achieved {achieved:.2f}/s = "
              f"{achieved / PACED_MPS:.0%} of the limit; most in any 1-s window: {window}")
    finally:
        fake.stop()
        database.dispose()
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
