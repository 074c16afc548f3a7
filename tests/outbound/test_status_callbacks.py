"""Twilio status callbacks, signed exactly as Twilio signs them, against the web app."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.factories import make_patient, make_session
from tests.support.fake_twilio import use_protocol
from worker.care.scheduling import sync_session
from worker.core.db import utcnow
from worker.core.models import Flag, Message
from worker.jobs.periodic import run_inline


@pytest.fixture(autouse=True)
def mood_protocol(monkeypatch, tmp_path):
    """The protocol of this module, set before any context (and the `client` app) is built."""
    use_protocol(monkeypatch, tmp_path, {"name": "mood_now", "channel": "preferred"})


@pytest.fixture
def sent(db, fake_twilio, client, stack):
    """One SMS (a `preferred` step) sent through the fake Twilio; returns (row id, sid)."""
    now = utcnow()
    p = make_patient(db)
    s = make_session(db, p, now - timedelta(hours=1), ended=now - timedelta(seconds=5))
    sync_session(db, s, now, stack.ctx.protocol)
    db.commit()
    run_inline(stack.outbound(), now)
    row = db.scalar(select(Message).where(Message.session_id == s.id, Message.channel == "sms"))
    assert row.status == "sent"
    return row.id, row.provider_id


def _row(db, row_id):
    db.expire_all()
    return db.get(Message, row_id)


def test_delivered_callback_marks_the_message_delivered(db, fake_twilio, client, sent):
    row_id, sid = sent
    assert fake_twilio.send_status(client, sid, "delivered").status_code == 200
    row = _row(db, row_id)
    assert row.status == "delivered" and row.delivered_at is not None and row.provider_status == "delivered"


def test_callbacks_out_of_order_never_move_a_message_backwards(db, fake_twilio, client, sent):
    row_id, sid = sent
    fake_twilio.send_status(client, sid, "delivered")
    assert fake_twilio.send_status(client, sid, "sent").status_code == 200
    assert fake_twilio.send_status(client, sid, "queued").status_code == 200
    row = _row(db, row_id)
    assert (row.status, row.provider_status) == ("delivered", "delivered")


def test_repeated_callback_changes_nothing_the_second_time(db, fake_twilio, client, sent):
    row_id, sid = sent
    fake_twilio.send_status(client, sid, "delivered")
    first = _row(db, row_id).delivered_at
    assert fake_twilio.send_status(client, sid, "delivered").status_code == 200
    assert _row(db, row_id).delivered_at == first


@pytest.mark.parametrize("status, code", [("undelivered", "30003"), ("failed", "30007")])
def test_undelivered_or_failed_callback_fails_flags_and_falls_back_to_email(db, fake_twilio, client, sent,
                                                                           status, code):
    row_id, sid = sent
    fake_twilio.send_status(client, sid, "sent")
    assert fake_twilio.send_status(client, sid, status, error_code=code).status_code == 200
    row = _row(db, row_id)
    assert (row.status, row.error_code) == ("failed", code) and code in row.error
    assert db.scalar(select(Flag).where(Flag.kind == "delivery_failed", Flag.message_id == row_id))
    email = db.scalar(select(Message).where(Message.session_id == row.session_id, Message.channel == "email"))
    assert email is not None and email.status == "scheduled"
    # Twilio repeating the failure callback adds no second fallback
    fake_twilio.send_status(client, sid, status, error_code=code)
    assert len(list(db.scalars(select(Message).where(Message.channel == "email")))) == 1


def test_callback_for_an_unknown_sid_is_accepted_and_ignored(db, fake_twilio, client, sent):
    row_id, sid = sent
    other = fake_twilio.status_params(sid, "delivered")
    other["MessageSid"] = other["SmsSid"] = "SM" + "f" * 32
    signature = fake_twilio.sign("https://aftercare.example.org/webhooks/twilio/status", other)
    r = client.post("/webhooks/twilio/status", data=other, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 200
    assert _row(db, row_id).status == "sent"


def test_forged_signature_is_refused_and_changes_nothing(db, fake_twilio, client, sent):
    row_id, sid = sent
    forged = fake_twilio.sign("https://aftercare.example.org/webhooks/twilio/status",
                              fake_twilio.status_params(sid, "failed"))  # signed for other params
    r = fake_twilio.send_status(client, sid, "delivered", signature=forged)
    assert r.status_code == 403
    assert _row(db, row_id).status == "sent"


def test_missing_signature_is_refused(db, fake_twilio, client, sent):
    row_id, sid = sent
    r = client.post("/webhooks/twilio/status", data=fake_twilio.status_params(sid, "delivered"))
    assert r.status_code == 403
    assert _row(db, row_id).status == "sent"


def test_signature_is_checked_against_public_base_url_not_the_proxied_request(db, fake_twilio, client, sent):
    """Behind a TLS proxy the app sees http://testserver; Twilio signed https://aftercare.example.org."""
    row_id, sid = sent
    as_seen_by_app = fake_twilio.send_status(client, sid, "delivered",
                                             url="http://testserver/webhooks/twilio/status")
    assert as_seen_by_app.status_code == 403
    assert fake_twilio.message(sid).status_callback.startswith("https://aftercare.example.org/")
    assert fake_twilio.send_status(client, sid, "delivered").status_code == 200  # signed for the public URL
    assert _row(db, row_id).status == "delivered"
