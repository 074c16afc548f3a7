"""Inbound benchmark: prints figures, asserts nothing.

1. inbound webhook rate (requests/s): signature check + store + parse + act, over real HTTP
   to uvicorn on 127.0.0.1, PostgreSQL;
2. crisis latency: from posting a crisis reply to the on-call SMS reaching the fake Twilio
   server, through a real Celery worker on Redis; median and worst of 20 runs.

    .venv/bin/python bench/inbound.py     # BENCH_DATABASE_URL / BENCH_REDIS_URL override
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not bench/ (and its modules)

from bench.dispatch import fresh_database  # noqa: E402

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
REQUESTS = 2000
CLIENTS = 4


def main() -> None:
    from tests.support.fake_twilio import FakeTwilio
    from tests.support.live import free_port, post_signed_sms, wait_for, web_server, worker_and_beat

    url = fresh_database()
    fake = FakeTwilio().start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.environ.update(DATABASE_URL=url, BROKER_URL=REDIS, PUBLIC_BASE_URL=base, SECRET_KEY="bench",
                      CLINIC_NAME="Bench Clinic", CLINIC_PHONE="(212) 555-0100", ONCALL_SMS="+12125550190",
                      DISPATCH_INTERVAL="1", TWILIO_MAX_MPS="1000", LOG_LEVEL="WARNING", **fake.env())
    import logging

    logging.basicConfig(level=logging.WARNING)
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    from worker.core.config import load_settings
    from worker.core.context import build_context
    from worker.core.db import Database, utcnow
    from worker.core.migrate import upgrade
    from worker.core.models import Checkin, Expects, InfusionSession, Patient, SessionStatus
    from worker.outbound.runtime import build_outbound

    database = Database(url)
    upgrade(database)
    ctx = build_context(load_settings(), database)  # this process's composition root: the app and the worker
    now = utcnow()
    phones = [f"+1212555{n:04d}" for n in range(1000, 1200)]
    with database.scope() as db:  # 200 patients, each with an open mood check-in
        for phone in phones:
            p = Patient(first_name="Bench", phone=phone, timezone="America/New_York", sms_consent=True)
            s = InfusionSession(patient=p, scheduled_start=now - timedelta(hours=30),
                                ended_at=now - timedelta(hours=24), status=SessionStatus.completed)
            db.add_all([p, s])
            db.flush()
            db.add(Checkin(session_id=s.id, patient_id=p.id, step="mood_day1", expects=Expects.mood, opened_at=now,
                           closes_at=now + timedelta(days=3), state={}))

    bodies = ["7", "a 6 today", "YES", "seven", "hello?", "I'm ok thanks", "8/10", "STOP", "START", "HELP"]
    with web_server(ctx, port):
        # 1. inbound rate (no worker running: auto-replies wait in Redis, as they would under load)
        def one(i: int) -> int:
            return post_signed_sms(base, base, fake.auth_token, phones[i % len(phones)], bodies[i % len(bodies)]
                                   ).status_code

        for i in range(50):  # warm-up
            one(i)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            codes = list(pool.map(one, range(REQUESTS)))
        elapsed = time.perf_counter() - t0
        ok = sum(c == 200 for c in codes)
        print(f"inbound webhook: {REQUESTS} signed requests from {CLIENTS} clients in {elapsed:.1f} s = "
              f"{REQUESTS / elapsed:,.0f} requests/s ({ok} answered 200; signature + store + parse + act, "
              f"uvicorn single process, PostgreSQL)")

        # 2. crisis latency through a real worker
        redis.Redis.from_url(REDIS).flushdb()  # drop the queued auto-replies of part 1
        with worker_and_beat(build_outbound(ctx), os.path.join(tempfile.mkdtemp(), "beat")):
            time.sleep(2)
            latencies = []
            for run in range(20):
                before = len(fake.sent(to="+12125550190"))
                t0 = time.perf_counter()
                post_signed_sms(base, base, fake.auth_token, phones[run], "i want to end my life")
                wait_for(lambda before=before: len(fake.sent(to="+12125550190")) > before, timeout=30,
                         interval=0.002)
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.2)
        print(f"crisis reply -> on-call SMS at the fake Twilio: median {statistics.median(latencies) * 1000:.0f} ms,"
              f" worst {max(latencies) * 1000:.0f} ms over {len(latencies)} runs")
    fake.stop()
    database.dispose()


if __name__ == "__main__":
    main()
