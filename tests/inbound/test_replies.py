"""Two-way check-ins over the signed inbound webhook: keywords, matching, parsing, escalation."""

from datetime import timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.support.factories import at, completed_session, make_patient, make_session
from tests.support.inbound import AUTH_TOKEN, post_sms, sms_params
from worker.care.scheduling import sync_session
from worker.core.models import Checkin, Flag, Message, Reply, SmsOptOut
from worker.inbound import pipeline, store
from worker.jobs import periodic
from worker.outbound import dispatch

END = at("2027-06-10T11:00-04:00")
PHONE = "+12125550101"


@pytest.fixture
def twilio_env(monkeypatch, stack):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "+12125550100")
    monkeypatch.setenv("ONCALL_SMS", "+12125550190, +12125550191")
    monkeypatch.setenv("ONCALL_EMAIL", "oncall@example.org")
    stack.reload()


@pytest.fixture
def outbox(outbox, enqueued):
    """The console outbox; the inline passes below hand the rows they queue (the first PHQ-9 question
    after its intro) to `enqueued`, as the app does for the rows a reply queues."""
    outbox.enqueue_urgent = enqueued.extend
    return outbox


def run_inline(outbox, now):
    """Every periodic job through the console outbox; the urgent rows its sends queue go to
    `outbox.enqueue_urgent` (the test's `enqueued` list), as the app's go to the workers."""
    periodic.run_inline(outbox.out, now, enqueue_urgent=outbox.enqueue_urgent)


@pytest.fixture
def app(twilio_env, client, enqueued, outbox):
    # twilio_env first: the app captures the context when `client` is built.
    return client


def _flags(db, kind=None):
    db.expire_all()
    q = select(Flag)
    if kind:
        q = q.where(Flag.kind == kind)
    return list(db.scalars(q))


def _last_reply(db):
    db.expire_all()
    return db.scalar(select(Reply).order_by(Reply.id.desc()))


def _send_until(db, outbox, when):
    """Run the dispatcher (console channels) at `when`; returns the outbox text."""
    run_inline(outbox, when)
    return outbox.text


def _session(db, outbox, patient=None, **pkw):
    s = completed_session(db, outbox.stack.ctx.protocol, END, patient, **pkw)
    return s.patient, s


def _open_step(db, outbox, when, **pkw):
    """A patient whose steps due by `when` were sent, so their check-ins are open."""
    p, s = _session(db, outbox, **pkw)
    _send_until(db, outbox, when)
    return p, s


def _checkin(db, step):
    db.expire_all()
    return db.scalar(select(Checkin).where(Checkin.step == step))


# -- the webhook itself -----------------------------------------------------------------------
def test_inbound_is_answered_with_twiml(app, db):
    r = post_sms(app, "+12125550177", "hello")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert r.text.endswith("<Response></Response>")


def test_forged_signature_is_403_and_nothing_is_stored(app, db):
    params = sms_params(PHONE, "YES")
    r = app.post("/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
    assert r.status_code == 403
    assert post_sms(app, PHONE, "YES", signed=False).status_code == 403
    assert db.scalar(select(func.count(Reply.id))) == 0


def test_signature_over_a_different_body_is_403(app, db):
    from tests.support.inbound import signature

    params = sms_params(PHONE, "YES")
    sig = signature(params)
    params["Body"] = "NO"
    assert app.post("/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": sig}).status_code == 403


def test_malformed_request_is_400_and_nothing_is_half_written(app, db):
    from tests.support.inbound import signature

    params = {"Body": "YES", "To": "+12125550100"}  # no MessageSid, no From
    r = app.post("/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": signature(params)})
    assert r.status_code == 400 and r.json()["field"] == "MessageSid"
    assert db.scalar(select(func.count(Reply.id))) == 0


def test_a_twilio_retry_is_stored_once(app, db):
    post_sms(app, PHONE, "hello", sid="SMdup0000000000000000000000000001")
    post_sms(app, PHONE, "hello", sid="SMdup0000000000000000000000000001")
    assert db.scalar(select(func.count(Reply.id))) == 1
    assert len(_flags(db, "unmatched")) == 1


def test_reply_is_stored_before_processing_and_retried_by_the_tick(app, db, stack, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug in processing")

    monkeypatch.setattr(pipeline, "_process", boom)
    assert post_sms(app, PHONE, "7").status_code == 200
    stored = _last_reply(db)
    assert stored.body == "7" and stored.processed_at is None
    monkeypatch.undo()
    pipeline.process_pending(stack.ctx, stored.received_at + timedelta(minutes=5))
    assert _last_reply(db).processed_at is not None


def test_database_down_answers_503_so_twilio_retries(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(*a, **k):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "store_inbound_sms", down)
    assert post_sms(app, PHONE, "7").status_code == 503


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.text(max_size=300), st.just(""), st.text(min_size=5000, max_size=20000),
                      st.just("\U0001F600" * 200_000)))
def test_any_body_is_stored_and_never_500(app, db, body):
    r = post_sms(app, PHONE, body)
    assert r.status_code == 200
    assert _last_reply(db).body == body[: store.MAX_BODY]


# -- keywords ---------------------------------------------------------------------------------
def test_stop_opts_out_and_skips_pending_sms(app, db, outbox):
    p, _s = _session(db, outbox)
    post_sms(app, PHONE, "Stop")
    assert db.get(SmsOptOut, PHONE) is not None
    db.expire_all()
    pending = db.scalars(select(Message).where(Message.to_address == PHONE, Message.channel == "sms")).all()
    assert pending and {m.status for m in pending} == {"skipped"}
    assert app.get(f"/api/patients/{p.id}").json()["sms_opted_out"] is True


@pytest.mark.parametrize("word", ["STOP", "stopall", "UNSUBSCRIBE", "cancel", "End", "quit"])
def test_every_stop_keyword_opts_out(app, db, word):
    post_sms(app, PHONE, word)
    assert db.get(SmsOptOut, PHONE) is not None


def test_start_opts_back_in_and_revives_future_sms(app, db, outbox):
    post_sms(app, PHONE, "STOP")
    _session(db, outbox)  # scheduled while opted out: skipped
    with time_machine.travel(END + timedelta(hours=2, minutes=30), tick=False):
        post_sms(app, PHONE, "unstop")
    db.expire_all()
    assert db.get(SmsOptOut, PHONE) is None
    rows = {m.step: m for m in db.scalars(select(Message).where(Message.channel == "sms"))}
    assert rows["home_safe"].status == "skipped"  # its time passed while opted out
    assert rows["recovery_tips"].status == "scheduled"


def test_opt_out_type_parameter_is_honoured(app, db):
    post_sms(app, PHONE, "Arretez svp", OptOutType="STOP")
    assert db.get(SmsOptOut, PHONE) is not None


def test_help_replies_with_clinic_name_and_phone(app, db, outbox, enqueued):
    make_patient(db)
    db.commit()
    post_sms(app, PHONE, "HELP")
    (mid,) = enqueued
    dispatch.send_message(outbox.out, mid, 0, END)
    assert "Northside Clinic" in outbox.text and "(212) 555-0100" in outbox.text


# -- matching ---------------------------------------------------------------------------------
def test_unknown_number_is_stored_and_flagged_unmatched(app, db):
    post_sms(app, "+12125550188", "who is this")
    (flag,) = _flags(db, "unmatched")
    assert flag.reply_id == _last_reply(db).id and flag.patient_id is None


def test_reply_with_no_open_step_is_flagged_unmatched(app, db):
    make_patient(db)
    db.commit()
    post_sms(app, PHONE, "7")
    (flag,) = _flags(db, "unmatched")
    assert flag.patient_id is not None and _last_reply(db).outcome == "unmatched"


# -- ride and home ----------------------------------------------------------------------------
def _ride_open(db, outbox):
    """A session tomorrow whose ride question (due at start - 24h = END) went out."""
    s = make_session(db, make_patient(db), END + timedelta(days=1))
    sync_session(db, s, END, outbox.stack.ctx.protocol)
    db.commit()
    _send_until(db, outbox, END)
    return s


def test_yes_confirms_the_ride(app, db, outbox):
    _ride_open(db, outbox)
    post_sms(app, PHONE, "Yes!")
    c = _checkin(db, "ride_confirm")
    assert (c.status, c.score) == ("answered", 1)
    run_inline(outbox, END + timedelta(hours=23))
    assert _flags(db, "ride_unconfirmed") == []


def test_no_raises_ride_unconfirmed_at_once(app, db, outbox):
    s = _ride_open(db, outbox)
    post_sms(app, PHONE, "no")
    (flag,) = _flags(db, "ride_unconfirmed")
    assert flag.session_id == s.id and flag.reply_id is not None


def test_silence_raises_ride_unconfirmed_two_hours_before_start(app, db, outbox):
    _ride_open(db, outbox)
    run_inline(outbox, END + timedelta(hours=21, minutes=59))
    assert _flags(db, "ride_unconfirmed") == []
    run_inline(outbox, END + timedelta(hours=22))
    assert len(_flags(db, "ride_unconfirmed")) == 1
    post_sms(app, PHONE, "yes")  # a late reply still closes the step
    assert _checkin(db, "ride_confirm").status == "answered"


def test_no_home_within_three_hours_raises_not_home(app, db, outbox):
    _open_step(db, outbox, END + timedelta(hours=2))
    run_inline(outbox, END + timedelta(hours=5))
    (flag,) = _flags(db, "not_home")
    assert flag.step == "home_safe"


def test_home_reply_closes_the_home_check(app, db, outbox):
    _open_step(db, outbox, END + timedelta(hours=2))
    post_sms(app, PHONE, "I'm home")
    run_inline(outbox, END + timedelta(hours=5))
    assert _checkin(db, "home_safe").status == "answered" and _flags(db, "not_home") == []


# -- mood -------------------------------------------------------------------------------------
def _mood_open(db, outbox, patient=None):
    p, s = _session(db, outbox, patient=patient)
    _send_until(db, outbox, END + timedelta(hours=24))
    return p, s


def test_mood_score_is_stored_with_the_step(app, db, outbox):
    _mood_open(db, outbox)
    post_sms(app, PHONE, "a 7 today")
    c = _checkin(db, "mood_day1")
    assert (c.status, c.score) == ("answered", 7)
    assert _last_reply(db).score == 7 and _flags(db, "low_mood") == []


@pytest.mark.parametrize("text", ["3", "zero", "2/10"])
def test_low_mood_is_flagged(app, db, outbox, text):
    _mood_open(db, outbox)
    post_sms(app, PHONE, text)
    (flag,) = _flags(db, "low_mood")
    assert flag.step == "mood_day1"


def test_a_drop_of_three_is_flagged_even_above_three(app, db, outbox):
    _p, _ = _mood_open(db, outbox)
    post_sms(app, PHONE, "8")
    run_inline(outbox, END + timedelta(hours=72))
    post_sms(app, PHONE, "5")
    (flag,) = _flags(db, "low_mood")
    assert flag.step == "mood_day3" and "previous 8" in flag.detail


def test_unreadable_mood_gets_one_clarification_then_unparsed(app, db, outbox, enqueued):
    _mood_open(db, outbox)
    post_sms(app, PHONE, "eleven")
    assert _last_reply(db).outcome == "clarify" and len(enqueued) == 1
    clarify = db.get(Message, enqueued[0])
    assert clarify.template == "clarify_mood"
    post_sms(app, PHONE, "meh")
    assert _last_reply(db).outcome == "unparsed" and len(_flags(db, "unparsed")) == 1
    assert len(enqueued) == 1  # no second clarification
    assert {r.body for r in db.scalars(select(Reply))} == {"eleven", "meh"}  # raw text kept
    post_sms(app, PHONE, "6")
    assert _checkin(db, "mood_day1").score == 6


# -- PHQ-9 ------------------------------------------------------------------------------------
def _phq9_open(db, outbox, **pkw):
    p, s = _session(db, outbox, **pkw)
    _send_until(db, outbox, END + timedelta(days=7))
    return p, s


def test_phq9_by_link_for_patients_who_did_not_choose_text(app, db, outbox):
    _phq9_open(db, outbox)
    body = db.scalar(select(Message.body).where(Message.step == "phq9_week1", Message.channel == "sms"))
    assert "https://aftercare.example.org/phq9/" in body
    assert "interest" not in body.lower()
    assert db.scalar(select(func.count(Message.id)).where(Message.template == "phq9_question")) == 0


def _answer_all(app, db, outbox, enqueued, answers):
    for i, a in enumerate(answers, start=1):
        # the next question was queued at once; the worker sends it
        q = db.scalar(select(Message).where(Message.template == "phq9_question", Message.part == i))
        assert q is not None, f"question {i} not queued"
        assert q.id in enqueued
        dispatch.send_message(outbox.out, q.id, 0, END + timedelta(days=7))
        post_sms(app, PHONE, str(a))


def test_phq9_by_sms_one_question_at_a_time(app, db, outbox, enqueued):
    _phq9_open(db, outbox, phq9_by_sms=True)
    intro = db.scalar(select(Message).where(Message.step == "phq9_week1", Message.part == 0))
    assert "Over the last 2 weeks" in intro.body and "phq9/" not in intro.body
    _answer_all(app, db, outbox, enqueued, [1, 2, 1, 2, 3, 1, 2, 1, 0])
    c = _checkin(db, "phq9_week1")
    assert (c.status, c.score, c.band) == ("answered", 13, "moderate")
    assert c.state["answers"] == [1, 2, 1, 2, 3, 1, 2, 1, 0]
    assert "Little interest or pleasure in doing things" in outbox.text
    assert _flags(db, "crisis") == [] and _flags(db, "low_mood") == []


def test_phq9_item9_raises_crisis_at_once(app, db, outbox, enqueued):
    _phq9_open(db, outbox, phq9_by_sms=True)
    _answer_all(app, db, outbox, enqueued, [2, 2, 2, 2, 2, 2, 2, 2, 2])
    (crisis,) = _flags(db, "crisis")
    assert "item 9" in crisis.detail
    templates = [db.get(Message, m).template for m in enqueued]
    assert "crisis_reply" in templates and templates.count("oncall_alert") == 3  # 2 SMS + 1 email
    assert len(_flags(db, "low_mood")) == 1  # total 18 >= 15
    assert _checkin(db, "phq9_week1").band == "moderately severe"


def test_phq9_unreadable_item_is_asked_again(app, db, outbox, enqueued):
    _phq9_open(db, outbox, phq9_by_sms=True)
    q1 = db.scalar(select(Message).where(Message.template == "phq9_question", Message.part == 1))
    dispatch.send_message(outbox.out, q1.id, 0, END + timedelta(days=7))
    post_sms(app, PHONE, "7")
    clarify = db.get(Message, enqueued[-1])
    assert clarify.template == "clarify_phq9" and clarify.context["item"] == 1
    post_sms(app, PHONE, "several days")
    assert _checkin(db, "phq9_week1").state["answers"] == [1]


def test_phq9_by_sms_expires_keeping_partial_answers(app, db, outbox, enqueued):
    _phq9_open(db, outbox, phq9_by_sms=True)
    _answer_all(app, db, outbox, enqueued, [1, 1, 1])
    run_inline(outbox, END + timedelta(days=7, hours=73))
    c = _checkin(db, "phq9_week1")
    assert c.status == "expired" and c.state["answers"] == [1, 1, 1]


# -- crisis -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["I want to die", "QUIERO MORIR", "thinking of suicde", "7 but i want to kill myself"])
def test_crisis_language_flags_replies_and_alerts_on_call(app, db, outbox, enqueued, text):
    _mood_open(db, outbox)
    post_sms(app, PHONE, text)
    (crisis,) = _flags(db, "crisis")
    msgs = [db.get(Message, m) for m in enqueued]
    reply = next(m for m in msgs if m.template == "crisis_reply")
    alerts = [m for m in msgs if m.template == "oncall_alert"]
    assert reply.to_address == PHONE
    assert sorted(a.to_address for a in alerts) == ["+12125550190", "+12125550191", "oncall@example.org"]
    for m in msgs:
        dispatch.send_message(outbox.out, m.id, 0, END + timedelta(hours=24))
    assert "988" in outbox.text and "911" in outbox.text
    db.expire_all()
    alert_bodies = [db.get(Message, a.id).body for a in alerts]
    assert all(f"/flags/{crisis.id}" in b and "Alex" not in b and PHONE not in b for b in alert_bodies)


def test_on_call_link_opens_a_page_without_phi(app, db, enqueued):
    post_sms(app, "+12125550189", "I want to die")
    (crisis,) = _flags(db, "crisis")
    page = app.get(f"/flags/{crisis.id}")
    assert page.status_code == 200 and "crisis" in page.text and "OPEN" in page.text
    assert "+12125550189" not in page.text and "die" not in page.text
    assert app.get("/flags/9999").status_code == 404


def test_crisis_from_an_unknown_number_still_alerts(app, db, enqueued):
    post_sms(app, "+12125550189", "i want to end my life")
    assert len(_flags(db, "crisis")) == 1 and len(_flags(db, "unmatched")) == 1
    assert len(enqueued) == 4


def test_crisis_reply_reaches_a_number_that_opted_out(app, db, outbox, enqueued):
    post_sms(app, PHONE, "STOP")
    post_sms(app, PHONE, "i want to die")
    reply = next(db.get(Message, m) for m in enqueued if db.get(Message, m).template == "crisis_reply")
    assert dispatch.send_message(outbox.out, reply.id, 0, END) == "sent"


# -- API --------------------------------------------------------------------------------------
def test_replies_and_flags_api(app, db, outbox):
    p, s = _mood_open(db, outbox)
    post_sms(app, PHONE, "2")
    rows = app.get("/api/replies", params={"patient_id": p.id}).json()
    assert rows[0]["body"] == "2" and rows[0]["score"] == 2 and rows[0]["flags"] == ["low_mood"]
    assert rows[0]["step"] == "mood_day1" and rows[0]["session_id"] == s.id and rows[0]["acknowledged_at"] is None
    assert app.get("/api/replies", params={"flag": "low_mood"}).json()[0]["id"] == rows[0]["id"]
    assert app.get("/api/replies", params={"flag": "nonsense"}).status_code == 422
    assert app.get("/api/replies", params={"since": "yesterday"}).json()["field"] == "since"
    (flag,) = app.get("/api/flags", params={"open": "true", "kind": "low_mood"}).json()
    acked = app.post(f"/api/flags/{flag['id']}/ack", json={"note": "called patient"}).json()
    assert acked["acknowledged_at"] and acked["note"] == "called patient"
    assert app.get("/api/flags", params={"open": "true"}).json() == []
    assert app.get("/api/replies", params={"patient_id": p.id}).json()[0]["acknowledged_at"]
    assert app.post("/api/flags/999/ack").status_code == 404


def test_checkins_api_gives_mood_and_phq9_series(app, db, outbox, enqueued):
    p, _ = _mood_open(db, outbox, patient=make_patient(db, phq9_by_sms=True))
    post_sms(app, PHONE, "6")
    series = app.get(f"/api/patients/{p.id}/checkins").json()
    assert series["mood"][0]["score"] == 6 and series["mood"][0]["step"] == "mood_day1"
    assert series["phq9"] == []
