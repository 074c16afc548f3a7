"""End to end on real parts: a Celery worker and beat on a real Redis, offsets of seconds."""

import io
import time
from datetime import timedelta

import pytest
import yaml

from tests.support.factories import make_patient, make_session
from tests.support.live import worker_and_beat
from worker.care.scheduling import sync_session
from worker.channels import ConsoleChannel
from worker.core.db import utcnow

pytestmark = pytest.mark.redis


class TimedOutbox(ConsoleChannel):
    """The console channel, noting when each message arrived."""

    def __init__(self, name, arrivals):
        super().__init__(name, stream=io.StringIO())
        self.arrivals = arrivals

    def send(self, message):
        self.arrivals.append((time.time(), message.id, message.body))
        return super().send(message)


@pytest.fixture
def celery_stack(redis_url, monkeypatch, tmp_path, db_clean, stack):
    """Real worker (threads) + real beat (a thread) on Redis, with DISPATCH_INTERVAL=1."""
    protocol = tmp_path / "fast.yaml"
    protocol.write_text(yaml.safe_dump({"quiet_hours": "", "steps": [
        {"name": "pickup_notice", "anchor": "session_end", "offset": "0s", "to": "driver", "channel": "sms",
         "template": "pickup_notice"},
        {"name": "home_safe", "anchor": "session_end", "offset": "3s", "to": "patient", "channel": "sms",
         "template": "home_safe", "expects": "home"},
        {"name": "recovery_tips", "anchor": "session_end", "offset": "6s", "to": "patient", "channel": "sms",
         "template": "recovery_tips"},
    ]}))
    monkeypatch.setenv("BROKER_URL", redis_url)
    monkeypatch.setenv("FOLLOWUP_PROTOCOL", str(protocol))
    monkeypatch.setenv("DISPATCH_INTERVAL", "1")
    stack.reload()
    arrivals = []
    out = stack.outbound({"sms": TimedOutbox("sms", arrivals), "email": TimedOutbox("email", arrivals)})
    with worker_and_beat(out, str(tmp_path / "beat-schedule"), concurrency=2):
        yield arrivals


def test_worker_and_beat_deliver_each_step_on_time(celery_stack, db, stack):
    arrivals = celery_stack
    end = utcnow()
    s = make_session(db, make_patient(db), end - timedelta(hours=1), ended=end)
    sync_session(db, s, end, stack.ctx.protocol)
    db.commit()
    t0 = end.timestamp()
    deadline = time.time() + 20
    while len(arrivals) < 3 and time.time() < deadline:
        time.sleep(0.1)
    assert len(arrivals) == 3, arrivals
    by_step = {}
    for when, _mid, body in arrivals:
        step = "pickup" if "picked up" in body else "home" if "HOME" in body else "tips"
        by_step[step] = when - t0
    # each arrives after it is due and within one tick (1 s) plus slack
    assert 0 <= by_step["pickup"] < 3.5
    assert 3 <= by_step["home"] < 6.5
    assert 6 <= by_step["tips"] < 9.5
    time.sleep(2)  # more ticks run: nothing is sent twice
    assert len(arrivals) == 3
