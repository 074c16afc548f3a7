"""The Twilio SMS channel: the real SDK against a fake Twilio on 127.0.0.1, through the dispatcher."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from tests.support.factories import completed_session, make_session
from tests.support.fake_twilio import FROM_NUMBER, use_protocol
from worker.care.scheduling import sync_session
from worker.channels import OutboundMessage, Reconciled
from worker.channels.twilio_sms import TwilioSmsChannel
from worker.core.db import utcnow
from worker.core.models import Flag, Message, SmsOptOut
from worker.jobs.periodic import run_inline
from worker.outbound.recovery import recover_stale

PATIENT_PHONE = "+12125550101"


@pytest.fixture
def checkin(monkeypatch, tmp_path, stack):
    """One `preferred` mood check-in to the patient at session end (SMS for an SMS patient)."""
    use_protocol(monkeypatch, tmp_path, {"name": "mood_now", "channel": "preferred"})
    stack.reload()


def _session(stack, db, now, **patient):
    return completed_session(db, stack.ctx.protocol, now - timedelta(seconds=5), now=now, **patient)


def _pass(stack, now, channels=None):
    """Every periodic job once, sending due rows in this process through the context's real channels."""
    return run_inline(stack.outbound(channels), now)


def _rows(db, session, channel=None):
    db.expire_all()
    q = select(Message).where(Message.session_id == session.id)
    if channel:
        q = q.where(Message.channel == channel)
    return list(db.scalars(q.order_by(Message.id)))


def test_due_sms_goes_through_the_sdk_to_twilio_and_the_sid_is_stored(db, stack, fake_twilio, checkin):
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [row] = _rows(db, s)
    [created] = fake_twilio.sent()
    assert row.status == "sent" and row.provider_id == created.sid and created.sid.startswith("SM")
    assert created.to == PATIENT_PHONE and created.body == row.body and "Northside Clinic" in created.body


def test_create_names_sender_and_status_callback_on_public_base_url(db, stack, fake_twilio, checkin):
    now = utcnow()
    _session(stack, db, now)
    _pass(stack, now)
    [req] = fake_twilio.create_requests()
    assert req.authorized
    assert req.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert req.params["From"] == FROM_NUMBER
    assert req.params["StatusCallback"] == "https://aftercare.example.org/webhooks/twilio/status"


def test_messaging_service_sid_replaces_the_from_number(db, stack, fake_twilio, checkin, monkeypatch):
    monkeypatch.delenv("TWILIO_FROM_NUMBER")
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "1" * 32)
    stack.reload()
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [req] = fake_twilio.create_requests()
    assert req.params["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in req.params
    assert fake_twilio.sent()[0].status == "accepted"
    assert _rows(db, s)[0].status == "sent"


def test_twilio_21610_skips_the_message_opts_the_number_out_and_it_is_never_sent_again(db, stack, fake_twilio, checkin):
    fake_twilio.fail_next(code=21610, message="Attempt to send to unsubscribed recipient")
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [row] = _rows(db, s)
    assert row.status == "skipped" and row.error_code == "21610"
    assert db.get(SmsOptOut, PATIENT_PHONE) is not None
    assert db.scalar(select(Flag).where(Flag.kind == "delivery_failed")) is None  # an opt-out is not a failure
    # A later session for the same number: nothing more reaches Twilio (the preferred step goes by email).
    s2 = make_session(db, s.patient, now - timedelta(minutes=30), ended=now - timedelta(seconds=1))
    sync_session(db, s2, now, stack.ctx.protocol)
    db.commit()
    _pass(stack, now + timedelta(seconds=1))
    assert len(fake_twilio.create_requests()) == 1
    assert [(r.channel, r.status) for r in _rows(db, s2)] == [("email", "sent")]


def test_twilio_21211_fails_with_reason_flags_a_clinician_and_falls_back_to_email(db, stack, fake_twilio, checkin):
    fake_twilio.fail_next(code=21211, message="The 'To' number +12125550101 is not a valid phone number.")
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [sms] = _rows(db, s, "sms")
    assert sms.status == "failed" and sms.error_code == "21211"
    assert "21211" in sms.error and "invalid" in sms.error.lower()
    assert "2125550101" not in sms.error  # Twilio's text carried the number; our reason does not
    flag = db.scalar(select(Flag).where(Flag.kind == "delivery_failed"))
    assert flag is not None and flag.message_id == sms.id
    [email] = _rows(db, s, "email")
    assert email.status == "scheduled" and email.to_address == "patient1@example.org"
    _pass(stack, now + timedelta(seconds=1))
    assert _rows(db, s, "email")[0].status == "sent"
    assert len(fake_twilio.create_requests()) == 1  # the failed SMS is not retried


def test_failed_sms_has_no_email_fallback_without_email_consent(db, stack, fake_twilio, checkin):
    fake_twilio.fail_next(code=21614, message="not a mobile number")
    now = utcnow()
    s = _session(stack, db, now, email_consent=False)
    _pass(stack, now)
    [sms] = _rows(db, s)
    assert sms.status == "failed" and sms.error_code == "21614" and "not a mobile" in sms.error
    assert _rows(db, s, "email") == []


def test_429_is_retried_no_sooner_than_retry_after_then_sent(db, stack, fake_twilio, checkin):
    fake_twilio.rate_limit_next(retry_after="120")
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [row] = _rows(db, s)
    assert (row.status, row.attempts, row.error_code) == ("scheduled", 1, "20429")
    assert row.next_attempt_at >= now + timedelta(seconds=119)
    _pass(stack, now + timedelta(seconds=60))  # too early: nothing happens
    assert len(fake_twilio.create_requests()) == 1
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    row = _rows(db, s)[0]
    assert row.status == "sent" and row.attempts == 2 and row.provider_id == fake_twilio.sent()[0].sid


def test_server_error_is_retried_with_backoff_then_sent(db, stack, fake_twilio, checkin):
    fake_twilio.server_error_next()
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [row] = _rows(db, s)
    assert (row.status, row.attempts, row.error_code) == ("scheduled", 1, "500")
    assert row.next_attempt_at > now
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    assert _rows(db, s)[0].status == "sent"
    assert len(fake_twilio.sent()) == 1


def test_timeout_after_twilio_created_it_is_not_sent_twice(db, stack, fake_twilio, checkin, monkeypatch):
    monkeypatch.setattr("worker.channels.twilio_sms.HTTP_TIMEOUT", 0.5)
    fake_twilio.hang_next(seconds=1.5)
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [row] = _rows(db, s)
    assert (row.status, row.error_code) == ("scheduled", "ambiguous")
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    row = _rows(db, s)[0]
    [created] = fake_twilio.sent()
    assert len(fake_twilio.create_requests()) == 1  # the retry looked first and found it
    assert row.status == "sent" and row.provider_id == created.sid
    assert len(fake_twilio.list_requests()) == 1


def test_timeout_on_a_text_with_a_signed_link_is_not_sent_twice_though_the_link_was_re_signed(
        db, stack, fake_twilio, monkeypatch, tmp_path):
    use_protocol(monkeypatch, tmp_path, {"name": "phq9_now", "template": "phq9", "expects": "phq9"})
    stack.reload()
    monkeypatch.setattr("worker.channels.twilio_sms.HTTP_TIMEOUT", 0.5)
    fake_twilio.hang_next(seconds=1.5)
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    # The link token carries a timestamp in seconds: two seconds on, the retry renders another one.
    with time_machine.travel(utcnow() + timedelta(seconds=2), tick=True):
        _pass(stack, _rows(db, s)[0].next_attempt_at + timedelta(seconds=1))
    row = _rows(db, s)[0]
    [created] = fake_twilio.sent()
    assert row.body != created.body and "https://aftercare.example.org/phq9/" in row.body
    assert row.status == "sent" and row.provider_id == created.sid
    assert len(fake_twilio.create_requests()) == 1


def test_connection_lost_before_twilio_created_it_is_sent_on_the_retry(db, stack, fake_twilio, checkin):
    fake_twilio.drop_next()
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    row = _rows(db, s)[0]
    assert (row.status, row.error_code) == ("scheduled", "ambiguous") and fake_twilio.sent() == []
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    row = _rows(db, s)[0]
    assert row.status == "sent" and len(fake_twilio.sent()) == 1
    assert len(fake_twilio.list_requests()) == 1 and len(fake_twilio.create_requests()) == 2


def test_gateway_timeout_counts_as_maybe_sent_and_is_checked_before_resending(db, stack, fake_twilio, checkin):
    fake_twilio.fail_next(status=504, message="Gateway Timeout")
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    row = _rows(db, s)[0]
    assert (row.status, row.error_code) == ("scheduled", "ambiguous")
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    assert _rows(db, s)[0].status == "sent" and len(fake_twilio.list_requests()) == 1


def test_ambiguous_retry_creates_nothing_while_twilio_cannot_be_asked(db, stack, fake_twilio, checkin):
    fake_twilio.drop_next()
    fake_twilio.fail_next_list(status=503)
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    first = _rows(db, s)[0]
    _pass(stack, first.next_attempt_at + timedelta(seconds=1))
    row = _rows(db, s)[0]
    assert (row.status, row.attempts, row.error_code) == ("scheduled", 2, "ambiguous")
    assert len(fake_twilio.create_requests()) == 1  # only the dropped one
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    assert _rows(db, s)[0].status == "sent" and len(fake_twilio.sent()) == 1


def test_unreachable_twilio_is_retried_as_certainly_not_sent(db, stack, fake_twilio, checkin, monkeypatch):
    from tests.support.live import free_port

    monkeypatch.setenv("TWILIO_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    stack.reload()
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    row = _rows(db, s)[0]
    assert (row.status, row.error_code) == ("scheduled", "connect")


def test_rejected_credentials_are_retried_not_failed(db, stack, fake_twilio, checkin, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token")
    stack.reload()
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    row = _rows(db, s)[0]
    assert (row.status, row.error_code) == ("scheduled", "20003") and "TWILIO_AUTH_TOKEN" in row.error
    assert not fake_twilio.create_requests()[0].authorized and fake_twilio.sent() == []


# -- a worker that died mid-send ------------------------------------------------------------------
class WorkerDied(BaseException):
    """Not an Exception: the dispatcher cannot catch it, like a killed process."""


class DiesAfterSending:
    def __init__(self, real, send_first: bool):
        self.real, self.send_first, self.name = real, send_first, "sms"

    def wait_turn(self):
        pass

    def send(self, message):
        if self.send_first:
            self.real.send(message)
        raise WorkerDied()


@pytest.mark.parametrize("reached_twilio, expected", [(True, "sent"), (False, "scheduled")])
def test_dead_worker_row_is_reconciled_with_twilio(db, stack, fake_twilio, checkin, reached_twilio, expected):
    now = utcnow()
    s = _session(stack, db, now)
    real = stack.outbound().channels
    with pytest.raises(WorkerDied):
        _pass(stack, now, channels={"sms": DiesAfterSending(real["sms"], reached_twilio), "email": real["email"]})
    assert _rows(db, s)[0].status == "sending"
    later = now + timedelta(seconds=stack.ctx.settings.sending_timeout + 1)
    assert recover_stale(stack.outbound(), later) == 1
    row = _rows(db, s)[0]
    assert row.status == expected
    if reached_twilio:
        assert row.provider_id == fake_twilio.sent()[0].sid
    _pass(stack, later)
    assert _rows(db, s)[0].status == "sent" and len(fake_twilio.sent()) == 1


def test_dead_worker_row_fails_for_a_human_when_twilio_cannot_be_asked(db, stack, fake_twilio, checkin):
    now = utcnow()
    s = _session(stack, db, now)
    real = stack.outbound().channels
    with pytest.raises(WorkerDied):
        _pass(stack, now, channels={"sms": DiesAfterSending(real["sms"], True), "email": real["email"]})
    fake_twilio.fail_next_list(status=500)
    recover_stale(stack.outbound(), now + timedelta(seconds=stack.ctx.settings.sending_timeout + 1))
    row = _rows(db, s, "sms")[0]
    assert row.status == "failed" and "not resent" in row.error
    assert db.scalar(select(Flag).where(Flag.kind == "delivery_failed", Flag.message_id == row.id))
    assert len(fake_twilio.sent()) == 1


def test_reconcile_does_not_claim_an_identical_text_another_row_already_owns(db, stack, fake_twilio, checkin):
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    [first] = _rows(db, s)
    channel = stack.outbound().channels["sms"]
    twin = OutboundMessage(id=first.id + 1000, channel="sms", to=first.to_address, body=first.body,
                           created_at=first.created_at)
    assert channel.reconcile(twin) == (Reconciled.not_found, None)
    mine = OutboundMessage(id=first.id, channel="sms", to=first.to_address, body=first.body,
                           created_at=first.created_at)
    assert channel.reconcile(mine) == (Reconciled.found, first.provider_id)


def test_reconcile_ignores_same_text_sent_before_this_row_could_be_sent(db, stack, fake_twilio):
    fake = fake_twilio
    settings = stack.ctx.settings
    channel = TwilioSmsChannel.from_settings(settings)
    channel.client.messages.create(to=PATIENT_PHONE, from_=FROM_NUMBER, body="same words")
    later_row = OutboundMessage(id=999_999, channel="sms", to=PATIENT_PHONE, body="same words",
                                created_at=utcnow() + timedelta(hours=1))
    assert channel.reconcile(later_row)[0] == Reconciled.not_found
    assert len(fake.sent()) == 1


def test_reconcile_bounds_by_when_the_row_was_due_not_only_created(db, stack, fake_twilio):
    """mood_day1 and mood_day3 share a text and are created together: day 3 must not "find" day 1."""
    channel = TwilioSmsChannel.from_settings(stack.ctx.settings)
    channel.client.messages.create(to=PATIENT_PHONE, from_=FROM_NUMBER, body="same words")  # day 1, sent now
    day3 = OutboundMessage(id=999_998, channel="sms", to=PATIENT_PHONE, body="same words",
                           created_at=utcnow() - timedelta(days=1), scheduled_for=utcnow() + timedelta(days=2))
    assert channel.reconcile(day3)[0] == Reconciled.not_found


def test_logs_never_show_the_number_or_the_text(db, stack, fake_twilio, checkin, caplog, monkeypatch):
    monkeypatch.setattr("worker.channels.twilio_sms.HTTP_TIMEOUT", 0.5)
    caplog.set_level(logging.DEBUG)
    fake_twilio.hang_next(seconds=1.5)
    now = utcnow()
    s = _session(stack, db, now)
    _pass(stack, now)
    row = _rows(db, s)[0]
    _pass(stack, row.next_attempt_at + timedelta(seconds=1))
    fake_twilio.fail_next(code=21211, message="The 'To' number +12125550102 is not valid")
    s2 = _session(stack, db, utcnow(), n=2)
    _pass(stack, utcnow())
    assert _rows(db, s)[0].status == "sent" and _rows(db, s2, "sms")[0].status == "failed"
    text = caplog.text
    assert "2125550101" not in text and "2125550102" not in text
    assert "mood today" not in text and row.body not in text
