"""The dispatcher: due rows only, claimed once, re-checked at send time, retried, recovered."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.support.factories import at, completed_session, make_patient, make_session
from worker.care.scheduling import sync_session
from worker.channels import Channel, Reconciled, SendResult
from worker.core.models import Flag, Message, SessionStatus, SmsOptOut
from worker.jobs.periodic import run_inline
from worker.outbound import dispatch
from worker.outbound.recovery import recover_stale

END = at("2027-06-10T11:00-04:00")


@pytest.fixture
def completed(db, ctx):
    return completed_session(db, ctx.protocol, END)


def _row(db, session, step, channel="sms"):
    db.expire_all()
    return db.scalar(select(Message).where(Message.session_id == session.id, Message.step == step,
                                           Message.channel == channel))


def test_due_rows_are_sent_and_future_rows_wait(db, completed, outbox):
    run_inline(outbox.out, END + timedelta(minutes=1))
    assert _row(db, completed, "pickup_notice").status == "sent"
    assert _row(db, completed, "home_safe").status == "scheduled"
    assert "Sam" in outbox.text and "+1********0199" not in outbox.text  # masked in print
    assert "**0199" in outbox.text


def test_sent_row_keeps_body_and_provider_id(db, completed, outbox):
    run_inline(outbox.out, END + timedelta(minutes=1))
    row = _row(db, completed, "pickup_notice")
    assert row.provider_id == f"console-sms-{row.id}" and row.sent_at is not None
    assert "Northside Clinic" in row.body and row.attempts == 1


def test_cancel_after_enqueue_is_honoured_at_send_time(db, completed, outbox):
    enqueued = []
    dispatch.dispatch_due(outbox.out, END + timedelta(minutes=1),
                          enqueue=lambda mid, att: enqueued.append((mid, att)))
    completed.status = SessionStatus.cancelled
    db.commit()
    for mid, att in enqueued:
        dispatch.send_message(outbox.out, mid, att, END + timedelta(minutes=1))
    row = _row(db, completed, "pickup_notice")
    assert (row.status, row.error) == ("cancelled", "session cancelled")
    assert outbox.text == ""


def test_stop_after_scheduling_skips_pending_sms(db, completed, outbox):
    db.add(SmsOptOut(phone="+12125550101"))
    db.commit()
    run_inline(outbox.out, END + timedelta(hours=3))
    home = _row(db, completed, "home_safe")
    assert (home.status, home.error) == ("skipped", "opted out of SMS")
    assert _row(db, completed, "recovery_tips", "email").status == "sent"


def test_late_row_expires_instead_of_sending(db, completed, outbox):
    run_inline(outbox.out, END + timedelta(hours=3))
    pickup = _row(db, completed, "pickup_notice")  # expires_after 2h
    assert pickup.status == "expired"
    assert "Sam" not in outbox.text


def test_the_same_task_twice_sends_once(db, completed, outbox):
    enqueued = []
    dispatch.dispatch_due(outbox.out, END, enqueue=lambda mid, att: enqueued.append((mid, att)))
    pickup = _row(db, completed, "pickup_notice").id
    (mid, att), = [e for e in enqueued if e[0] == pickup]
    assert dispatch.send_message(outbox.out, mid, att, END) == "sent"
    assert dispatch.send_message(outbox.out, mid, att, END) == "not-claimable"
    assert outbox.text.count(f"#{mid} ") == 1


def test_a_leased_row_is_not_enqueued_by_the_next_tick(db, completed, stack):
    out = stack.outbound()
    first, second = [], []
    dispatch.dispatch_due(out, END, enqueue=lambda mid, att: first.append(mid))
    dispatch.dispatch_due(out, END + timedelta(seconds=10), enqueue=lambda mid, att: second.append(mid))
    assert len(first) == 2 and second == []  # ride_confirm (past due) and pickup_notice
    third = []  # the task was lost (Redis restarted): after the lease it is enqueued again
    dispatch.dispatch_due(out, END + dispatch.LEASE + timedelta(seconds=1), enqueue=lambda mid, att: third.append(mid))
    assert third == first


class Flaky(Channel):
    name = "sms"

    def __init__(self, results):
        self.results = list(results)
        self.calls = 0

    def send(self, message):
        self.calls += 1
        return self.results.pop(0)


def test_transient_error_is_retried_with_backoff(db, completed, outbox):
    flaky = Flaky([SendResult.retry("HTTP 503", code="503"), SendResult.sent("SM1")])
    chans = {**outbox.channels, "sms": flaky}
    run_inline(outbox.out.with_channels(chans), END)
    row = _row(db, completed, "pickup_notice")
    assert (row.status, row.attempts, row.error) == ("scheduled", 1, "HTTP 503")
    assert row.next_attempt_at >= END + timedelta(seconds=24)
    run_inline(outbox.out.with_channels(chans), END + timedelta(seconds=10))
    assert flaky.calls == 1  # backoff not over yet
    run_inline(outbox.out.with_channels(chans), row.next_attempt_at)
    row = _row(db, completed, "pickup_notice")
    assert (row.status, row.attempts, row.provider_id) == ("sent", 2, "SM1")


def test_permanent_error_fails_with_reason_and_flag(db, completed, outbox):
    chans = {**outbox.channels, "sms": Flaky([SendResult.failed("invalid To number", code="21211")])}
    run_inline(outbox.out.with_channels(chans), END)
    row = _row(db, completed, "pickup_notice")
    assert (row.status, row.error, row.error_code) == ("failed", "invalid To number", "21211")
    flag = db.scalar(select(Flag).where(Flag.message_id == row.id))
    assert flag.kind == "delivery_failed" and flag.acknowledged_at is None


def test_gives_up_after_max_attempts(db, completed, outbox, monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_ATTEMPTS", 2)
    chans = {**outbox.channels, "sms": Flaky([SendResult.retry("timeout")] * 2)}
    now = END
    for _ in range(2):
        run_inline(outbox.out.with_channels(chans), now)
        now = _row(db, completed, "pickup_notice").next_attempt_at
    row = _row(db, completed, "pickup_notice")
    assert row.status == "failed" and row.error.startswith("gave up after 2 attempts")


def test_opt_out_reported_by_provider_skips_and_records(db, completed, outbox):
    chans = {**outbox.channels, "sms": Flaky([SendResult(outcome=dispatch.Outcome.opted_out, error_code="21610",
                                                         error="unsubscribed")])}
    run_inline(outbox.out.with_channels(chans), END)
    assert _row(db, completed, "pickup_notice").status == "skipped"
    assert db.get(SmsOptOut, "+12125550199") is not None


def test_channel_exception_does_not_strand_the_row(db, completed, outbox):
    class Broken(Channel):
        name = "sms"

        def send(self, message):
            raise RuntimeError("bug")

    run_inline(outbox.out.with_channels({**outbox.channels, "sms": Broken()}), END)
    assert _row(db, completed, "pickup_notice").status == "scheduled"


def test_template_error_fails_the_message_with_a_flag(db, completed, outbox):
    row = _row(db, completed, "pickup_notice")
    row.template = "no_such_template"
    db.commit()
    run_inline(outbox.out, END)
    row = _row(db, completed, "pickup_notice")
    assert row.status == "failed" and row.error.startswith("template error")
    assert db.scalar(select(func.count(Flag.id)).where(Flag.kind == "delivery_failed")) == 1


class Reconciler(Channel):
    name = "sms"

    def __init__(self, state, sid=None):
        self.state, self.sid, self.sent = state, sid, 0

    def send(self, message):
        self.sent += 1
        return SendResult.sent("SM-new")

    def reconcile(self, message):
        return self.state, self.sid


def _strand(db, session, when):
    row = _row(db, session, "pickup_notice")
    row.status, row.claimed_at, row.attempts = "sending", when, 1
    db.commit()
    return row


@pytest.mark.parametrize("state, final, sends", [
    (Reconciled.found, "sent", 0),  # the provider has it: recorded, not resent
    (Reconciled.not_found, "sent", 1),  # it never left: sent again, once
    (Reconciled.unknown, "failed", 0),  # cannot tell: not resent, a clinician sees it
])
def test_row_left_in_sending_by_a_dead_worker(db, completed, outbox, state, final, sends):
    _strand(db, completed, END)
    chan = Reconciler(state, "SM-old")
    chans = {**outbox.channels, "sms": chan}
    later = END + timedelta(minutes=10)
    recover_stale(outbox.out.with_channels(chans), later)
    run_inline(outbox.out.with_channels(chans), later)
    row = _row(db, completed, "pickup_notice")
    assert row.status == final and chan.sent == sends
    if state == Reconciled.found:
        assert row.provider_id == "SM-old"
    if state == Reconciled.unknown:
        assert "not resent" in row.error


def test_fresh_sending_row_is_left_alone(db, completed, outbox):
    _strand(db, completed, END)
    chan = Reconciler(Reconciled.not_found)
    assert recover_stale(outbox.out.with_channels({"sms": chan}), END + timedelta(seconds=30)) == 0
    assert _row(db, completed, "pickup_notice").status == "sending"


def test_racing_dispatchers_send_each_row_once(db, ctx, outbox):
    """Two dispatchers over the same due rows (conditional-UPDATE claims on SQLite, SKIP LOCKED on PG)."""
    for n in range(40):
        p = make_patient(db, n=n % 90)
        s = make_session(db, p, END - timedelta(hours=1), ended=END, external_id=f"race-{n}")
        sync_session(db, s, END, ctx.protocol)
    db.commit()
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        for _ in range(3):
            run_inline(outbox.out, END)

    threads = [threading.Thread(target=run) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    sent = db.scalars(select(Message.id).where(Message.status == "sent")).all()
    assert len(sent) == 40
    for mid in sent:
        assert outbox.text.count(f"#{mid} ") == 1
