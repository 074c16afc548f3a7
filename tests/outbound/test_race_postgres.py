"""Two dispatchers racing over the same 500 due rows on PostgreSQL: each sent exactly once."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.support.factories import at
from worker.channels import Channel, SendResult
from worker.core.models import Message, Patient
from worker.outbound import dispatch

pytestmark = pytest.mark.postgres_only
NOW = at("2027-06-10T12:00-04:00")


class CountingChannel(Channel):
    name = "sms"

    def __init__(self):
        self.sent = Counter()
        self.lock = threading.Lock()

    def send(self, message):
        with self.lock:
            self.sent[message.id] += 1
        return SendResult.sent(f"SM{message.id}")


def test_two_dispatchers_send_500_due_rows_exactly_once(db, stack):
    from worker.core.db import is_postgres

    assert is_postgres(db)
    p = Patient(first_name="Bo", phone="+12125550150", timezone="America/New_York", sms_consent=True)
    db.add(p)
    db.flush()
    db.add_all([
        Message(dedupe_key=f"race:{i}", kind="alert", patient_id=p.id, recipient="patient", channel="sms",
                to_address=p.phone, template="recovery_tips", context={}, status="scheduled",
                scheduled_for=NOW - timedelta(seconds=i % 60), next_attempt_at=NOW - timedelta(seconds=i % 60))
        for i in range(500)
    ])
    db.commit()
    chan = CountingChannel()
    channels = {"sms": chan, "email": chan}
    out = stack.outbound(channels)
    barrier = threading.Barrier(2)
    errors = []

    def dispatcher():
        try:
            barrier.wait()
            for _ in range(5):  # small batches force interleaving with the other dispatcher
                dispatch.dispatch_due(out, NOW, lambda mid, att: dispatch.send_message(out, mid, att, NOW),
                                      limit=60)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    # whatever the two left (leased rows), later ticks finish
    for _ in range(10):
        dispatch.dispatch_due(out, NOW + dispatch.LEASE * 2, lambda mid, att: dispatch.send_message(out, mid, att, NOW))
    assert not errors
    assert len(chan.sent) == 500 and set(chan.sent.values()) == {1}
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Message).where(Message.status == "sent")) == 500


def test_claim_uses_skip_locked_so_two_ticks_take_disjoint_rows(db, ctx):

    p = Patient(first_name="Bo", phone="+12125550151", timezone="America/New_York", sms_consent=True)
    db.add(p)
    db.flush()
    db.add_all([Message(dedupe_key=f"lock:{i}", kind="alert", patient_id=p.id, recipient="patient", channel="sms",
                        to_address=p.phone, template="recovery_tips", context={}, status="scheduled",
                        scheduled_for=NOW, next_attempt_at=NOW) for i in range(20)])
    db.commit()
    a, b = ctx.db.session(), ctx.db.session()
    try:
        first = dispatch.claim_due(a, NOW, limit=15)  # holds row locks until commit
        second = dispatch.claim_due(b, NOW, limit=15)
        assert len(first) == 15 and len(second) == 5
        assert not {r[0] for r in first} & {r[0] for r in second}
    finally:
        a.commit()
        b.commit()
        a.close()
        b.close()
