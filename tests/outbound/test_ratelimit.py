"""TWILIO_MAX_MPS is one rate for every thread, process and worker: never a second over it."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.factories import make_patient, make_session
from tests.support.fake_twilio import use_protocol
from worker.outbound.ratelimit import LocalRateLimiter, RedisRateLimiter, limiter_for

ROOT = Path(__file__).resolve().parents[2]


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window) -- every start point is an event."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + window:
            j += 1
        best = max(best, j - i)
    return best


def _hammer(limiter, threads: int, each: int) -> list[float]:
    stamps: list[float] = []
    lock = threading.Lock()

    def run():
        for _ in range(each):
            limiter.acquire()
            with lock:
                stamps.append(time.time())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    return stamps


def test_window_counter_counts_half_open_windows():
    assert max_in_any_window([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]) == 5
    assert max_in_any_window([0.0, 0.1, 0.2, 0.95, 1.05]) == 4


def test_requests_over_the_rate_queue_up_rather_than_being_dropped():
    now = [100.0]
    limiter = LocalRateLimiter(4, clock=lambda: now[0])
    waits = [limiter.reserve() for _ in range(5)]
    assert waits[0] == 0
    assert all(b > a for a, b in itertools.pairwise(waits))  # each waits one slot longer
    assert waits[4] >= 1.0  # the fifth of a 4/s rate waits a whole second
    now[0] += 10  # idle time is not banked as a burst
    assert limiter.reserve() == 0 and limiter.reserve() > 0.25


def test_threads_in_one_process_never_exceed_the_rate_in_any_second():
    stamps = _hammer(LocalRateLimiter(10), threads=4, each=6)
    assert len(stamps) == 24
    assert max_in_any_window(stamps) <= 10
    assert stamps and max(stamps) - min(stamps) >= 2.2  # 24 at 10/s is at least 2.3 s


@pytest.mark.redis
def test_limiters_in_different_processes_share_one_rate_through_redis(redis_url):
    # Two limiter objects with their own connections behave like two processes.
    a, b = RedisRateLimiter(redis_url, 10), RedisRateLimiter(redis_url, 10)
    stamps: list[float] = []
    lock = threading.Lock()

    def run(lim):
        for _ in range(10):
            lim.acquire()
            with lock:
                stamps.append(time.time())

    threads = [threading.Thread(target=run, args=(lim,)) for lim in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(stamps) == 40
    assert max_in_any_window(stamps) <= 10
    assert max(stamps) - min(stamps) >= 3.8


def test_limiter_is_shared_redis_for_a_redis_broker_and_per_process_otherwise(fake_twilio, stack):
    assert isinstance(limiter_for("redis://127.0.0.1:6379/0", 5), RedisRateLimiter)
    local = limiter_for("memory://", 5)
    assert isinstance(local, LocalRateLimiter) and isinstance(limiter_for("", 5), LocalRateLimiter)
    # one per process: the composition root builds one limiter and the SMS channel paces with it
    out = stack.outbound()  # Twilio configured (fake_twilio), BROKER_URL=memory://
    assert isinstance(out.limiter, LocalRateLimiter) and out.channels["sms"].limiter is out.limiter


def test_unreachable_redis_limiter_sends_nothing_and_loses_nothing(db, fake_twilio, stack, monkeypatch,
                                                                   tmp_path):
    """No unpaced sending when the shared limiter is gone; the row stays due for a later tick."""
    from tests.support.live import free_port
    from worker.care.scheduling import sync_session
    from worker.core.db import utcnow
    from worker.core.models import Message
    from worker.jobs.periodic import run_inline
    from worker.outbound.ratelimit import RateLimiterUnavailable

    use_protocol(monkeypatch, tmp_path, {"name": "mood_now"})
    monkeypatch.setenv("BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    ctx = stack.reload()
    now = utcnow()
    s = make_session(db, make_patient(db), now - timedelta(hours=1), ended=now - timedelta(seconds=5))
    sync_session(db, s, now, ctx.protocol)
    db.commit()
    with pytest.raises(RateLimiterUnavailable):
        run_inline(stack.outbound(), now)
    db.expire_all()
    row = db.query(Message).one()
    assert (row.status, row.attempts) == ("scheduled", 0) and fake_twilio.sent() == []


# -- two real Celery worker processes --------------------------------------------------------------
def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--concurrency", "2"],
                            cwd=str(ROOT), env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_two_worker_processes_together_stay_within_twilio_max_mps(db, fake_twilio, redis_url, stack, monkeypatch,
                                                                 tmp_path):
    from worker.care.scheduling import sync_session
    from worker.core.db import utcnow
    from worker.jobs.celery_app import app, configure, enqueue_send
    from worker.outbound import dispatch

    use_protocol(monkeypatch, tmp_path, {"name": "mood_now"})
    monkeypatch.setenv("BROKER_URL", redis_url)
    monkeypatch.setenv("TWILIO_MAX_MPS", "5")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    ctx = stack.reload()
    now = utcnow()
    for n in range(1, 51):
        s = make_session(db, make_patient(db, n=n), now - timedelta(hours=1), ended=now - timedelta(seconds=5))
        sync_session(db, s, now, ctx.protocol)
    db.commit()

    env = dict(os.environ)
    procs = [_start_worker(env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    try:
        configure(app, ctx.settings)
        assert dispatch.dispatch_due(stack.outbound(), now, enqueue=enqueue_send) == 50
        deadline = time.time() + 60
        while len(fake_twilio.sent()) < 50 and time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything extra would show up now
    finally:
        for p in procs:
            _stop(p)
        configure(app, stack.reload().settings)
    logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in (1, 2))
    sent = fake_twilio.sent()
    assert len(sent) == 50, logs
    assert len({m.to for m in sent}) == 50  # every message exactly once
    stamps = [r.at for r in fake_twilio.create_requests()]
    assert len(stamps) == 50
    assert max_in_any_window(stamps) <= 5, sorted(round(t - min(stamps), 3) for t in stamps)
    assert max(stamps) - min(stamps) >= 49 / 5 - 0.1  # paced, not bunched
