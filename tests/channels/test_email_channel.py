"""The SMTP email channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.factories import completed_session
from tests.support.fake_twilio import use_protocol
from tests.support.live import free_port
from tests.support.smtp_server import first
from worker.channels import OutboundMessage, Reconciled
from worker.channels.smtp_email import SmtpEmailChannel
from worker.core.db import utcnow
from worker.core.models import Flag, Message
from worker.jobs.periodic import run_inline

TO = "patient1@example.org"


@pytest.fixture
def email_step(monkeypatch, tmp_path, stack):
    use_protocol(monkeypatch, tmp_path, {"name": "mood_now", "channel": "email"})
    stack.reload()


def _sent_session(stack, db, now, **patient):
    s = completed_session(db, stack.ctx.protocol, now - timedelta(seconds=5), now=now, **patient)
    run_inline(stack.outbound(), now)
    db.expire_all()
    return db.scalar(select(Message).where(Message.session_id == s.id, Message.channel == "email"))


def test_email_has_text_and_html_parts_and_its_message_id_is_the_provider_id(db, stack, smtp_server, email_step):
    row = _sent_session(stack, db, utcnow())
    assert row.status == "sent"
    mail = first(smtp_server, TO)
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "How is your mood today" in text and "<a href=" in html
    assert mail["Subject"] == "How are you feeling today?" and mail["To"] == TO
    assert mail["From"] == "Northside Clinic <care@northside.example.org>"
    assert mail["Message-ID"] == row.provider_id and row.provider_id.endswith("@northside.example.org>")
    assert smtp_server.messages[0].mail_from == "care@northside.example.org"


def test_patient_name_is_escaped_in_the_html_part_only(db, stack, smtp_server, email_step):
    _sent_session(stack, db, utcnow(), first_name="<b>Ana</b>")
    mail = first(smtp_server, TO)
    html = mail.get_body(preferencelist=("html",)).get_content()
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "&lt;b&gt;Ana&lt;/b&gt;" in html and "<b>Ana</b>" not in html
    assert "Hi <b>Ana</b>," in text


def test_refused_recipient_fails_with_the_servers_reason_and_a_flag(db, stack, smtp_server, email_step):
    smtp_server.refuse(TO)
    row = _sent_session(stack, db, utcnow())
    assert (row.status, row.error_code) == ("failed", "550")
    assert "User unknown" in row.error
    assert db.scalar(select(Flag).where(Flag.kind == "delivery_failed", Flag.message_id == row.id))
    assert smtp_server.messages == []


def test_temporary_refusal_is_retried_then_delivered(db, stack, smtp_server, email_step):
    smtp_server.defer(1)
    now = utcnow()
    row = _sent_session(stack, db, now)
    assert (row.status, row.attempts, row.error_code) == ("scheduled", 1, "451")
    assert row.next_attempt_at > now
    run_inline(stack.outbound(), row.next_attempt_at + timedelta(seconds=1))
    db.expire_all()
    assert db.get(Message, row.id).status == "sent"
    assert len(smtp_server.messages) == 1


def test_unreachable_mail_server_is_retried(db, stack, email_step, monkeypatch):
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MAIL_FROM", "care@northside.example.org")
    stack.reload()
    row = _sent_session(stack, db, utcnow())
    assert (row.status, row.error_code) == ("scheduled", "connect")


def test_credentials_in_smtp_url_are_url_decoded_for_login(smtp_server):
    url = f"smtp://care%40northside.example.org:p%40ss%3Aword@127.0.0.1:{smtp_server.port}"
    channel = SmtpEmailChannel(url, "care@northside.example.org")
    result = channel.send(OutboundMessage(id=1, channel="email", to=TO, body="hello", subject="hi", html="<p>hi</p>"))
    assert result.outcome == "sent"
    assert smtp_server.recorder.logins == [("care@northside.example.org", "p@ss:word")]


def test_starttls_url_without_tls_on_the_server_is_retried_not_sent_in_clear(smtp_server):
    channel = SmtpEmailChannel(f"smtp+starttls://127.0.0.1:{smtp_server.port}", "care@northside.example.org")
    result = channel.send(OutboundMessage(id=1, channel="email", to=TO, body="hello", subject="hi"))
    assert (result.outcome, result.error_code) == ("retry", "smtp-config")
    assert smtp_server.messages == []


def test_email_cannot_be_reconciled_so_a_dead_send_is_left_to_a_human(smtp_server):
    channel = SmtpEmailChannel(smtp_server.url, "care@northside.example.org")
    assert channel.reconcile(OutboundMessage(id=1, channel="email", to=TO, body="x")) == (Reconciled.unknown, None)


def test_logs_show_neither_address_nor_body(db, stack, smtp_server, email_step, caplog):
    caplog.set_level(logging.DEBUG)
    smtp_server.refuse(TO)
    _sent_session(stack, db, utcnow())
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("aftercare"))
    assert "delivery_failed" in ours or "refused" in ours
    assert "patient1@" not in ours and "mood today" not in ours
