"""Email check-ins: signed links, a confirm step, single use, expiry, and the PHQ-9 web form."""

import re
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from tests.support.factories import at, completed_session, make_patient, make_session
from worker.care.scheduling import sync_session
from worker.core.models import Checkin, Flag, Message, Reply
from worker.jobs.periodic import run_inline
from worker.outbound.links import make_token

END = at("2027-06-10T11:00-04:00")


@pytest.fixture(autouse=True)
def clock():
    """Links are signed with the wall clock: keep it on the test's timeline."""
    global _CLOCK
    with time_machine.travel(END, tick=False) as traveller:
        _CLOCK = traveller
        yield traveller
    _CLOCK = None


_CLOCK = None


@pytest.fixture
def email_patient(db, outbox):
    s = completed_session(db, outbox.stack.ctx.protocol, END, preferred_channel="email", language="en")
    return s.patient, s


def _send(db, outbox, when):
    _CLOCK.move_to(when)
    run_inline(outbox.out, when)
    db.expire_all()


def _email(db, step):
    return db.scalar(select(Message).where(Message.step == step, Message.channel == "email"))


def _links(text):
    return re.findall(r"https://aftercare\.example\.org(/[\w/.\-]+)", text)


def test_mood_email_has_eleven_signed_links_and_html_is_escaped(db, outbox, email_patient):
    _send(db, outbox, END + timedelta(hours=24))
    msg = _email(db, "mood_day1")
    paths = _links(msg.body)
    assert len(paths) == 11 and all(p.startswith("/r/") for p in paths)
    assert msg.subject == "How are you feeling today?"
    assert msg.html.count('href="https://aftercare.example.org/r/') == 11


def test_opening_a_link_records_nothing_until_confirmed(client, db, outbox, email_patient):
    _send(db, outbox, END + timedelta(hours=24))
    paths = _links(_email(db, "mood_day1").body)
    with time_machine.travel(END + timedelta(hours=25), tick=False):
        page = client.get(paths[6])
        assert page.status_code == 200 and "Mood 6 out of 10" in page.text and "<form method=\"post\">" in page.text
        db.expire_all()
        assert db.scalar(select(Checkin).where(Checkin.step == "mood_day1")).status == "open"
        done = client.post(paths[6])
        assert done.status_code == 200 and "Thank you" in done.text
    c = db.scalar(select(Checkin).where(Checkin.step == "mood_day1"))
    assert (c.status, c.score) == ("answered", 6)
    reply = db.scalar(select(Reply).where(Reply.channel == "web"))
    assert reply.body == "link: 6" and reply.score == 6


def test_a_used_link_shows_a_clear_page_and_never_records_twice(client, db, outbox, email_patient):
    _send(db, outbox, END + timedelta(hours=24))
    paths = _links(_email(db, "mood_day1").body)
    with time_machine.travel(END + timedelta(hours=25), tick=False):
        client.post(paths[2])
        again = client.post(paths[8])
        assert again.status_code == 409 and "already recorded" in again.text
        assert client.get(paths[2]).status_code == 409
    db.expire_all()
    assert db.scalar(select(Checkin.score).where(Checkin.step == "mood_day1")) == 2
    assert len(db.scalars(select(Reply)).all()) == 1
    assert len(db.scalars(select(Flag).where(Flag.kind == "low_mood")).all()) == 1


def test_an_expired_link_shows_a_clear_page(client, db, outbox, email_patient, settings):
    _send(db, outbox, END + timedelta(hours=24))
    paths = _links(_email(db, "mood_day1").body)
    with time_machine.travel(END + timedelta(days=30), tick=False):
        r = client.post(paths[5])
    assert r.status_code == 410 and "expired" in r.text
    db.expire_all()
    assert db.scalar(select(Checkin.status).where(Checkin.step == "mood_day1")) == "open"


def test_a_tampered_link_is_refused(client, db, outbox, email_patient):
    _send(db, outbox, END + timedelta(hours=24))
    path = _links(_email(db, "mood_day1").body)[3]
    r = client.post(path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
    assert r.status_code == 404 and "not valid" in r.text


def test_a_link_for_another_kind_of_answer_is_refused(client, db, outbox, email_patient, settings):
    _send(db, outbox, END + timedelta(hours=24))
    msg = _email(db, "mood_day1")
    forged = make_token(settings, msg.id, "yes")  # validly signed, but a mood step wants a number
    with time_machine.travel(END + timedelta(hours=25), tick=False):
        assert client.post(f"/r/{forged}").status_code == 404


def test_ride_confirmation_by_email_link(client, db, outbox):
    p = make_patient(db, preferred_channel="email")
    s = make_session(db, p, END + timedelta(days=1))
    sync_session(db, s, END, outbox.stack.ctx.protocol)
    db.commit()
    _send(db, outbox, END)
    paths = _links(_email(db, "ride_confirm").body)
    assert len(paths) == 2
    with time_machine.travel(END + timedelta(hours=1), tick=False):
        assert "I have a ride" in client.get(paths[0]).text
        client.post(paths[1])  # "no"
    db.expire_all()
    assert db.scalar(select(Flag.kind)) == "ride_unconfirmed"


def _phq9_path(db, outbox):
    _send(db, outbox, END + timedelta(days=7))
    (path,) = _links(_email(db, "phq9_week1").body)
    assert path.startswith("/phq9/")
    return path


def test_phq9_form_is_server_rendered_with_nine_questions(client, db, outbox, email_patient):
    path = _phq9_path(db, outbox)
    with time_machine.travel(END + timedelta(days=7, hours=1), tick=False):
        r = client.get(path)
    assert r.status_code == 200 and "<script" not in r.text
    assert r.text.count("<fieldset>") == 9 and 'name="viewport"' in r.text
    assert "Little interest or pleasure in doing things" in r.text and "988" in r.text


def test_phq9_form_needs_every_answer(client, db, outbox, email_patient):
    path = _phq9_path(db, outbox)
    with time_machine.travel(END + timedelta(days=7, hours=1), tick=False):
        r = client.post(path, data={f"item{i}": "1" for i in range(1, 8)})
    assert r.status_code == 422 and "missing: 8, 9" in r.text
    assert 'value="1" required checked' in r.text  # answers given are kept
    db.expire_all()
    assert db.scalar(select(Checkin.status).where(Checkin.step == "phq9_week1")) == "open"


def test_phq9_form_stores_items_total_and_band(client, db, outbox, email_patient):
    path = _phq9_path(db, outbox)
    answers = [3, 3, 2, 2, 2, 1, 1, 1, 0]
    with time_machine.travel(END + timedelta(days=7, hours=1), tick=False):
        r = client.post(path, data={f"item{i}": str(a) for i, a in enumerate(answers, 1)})
        assert r.status_code == 200
        assert client.post(path, data={f"item{i}": "0" for i in range(1, 10)}).status_code == 409
    db.expire_all()
    c = db.scalar(select(Checkin).where(Checkin.step == "phq9_week1"))
    assert (c.score, c.band, c.state["answers"]) == (15, "moderately severe", answers)
    assert [f.kind for f in db.scalars(select(Flag))] == ["low_mood"]


def test_phq9_form_item9_raises_crisis_and_shows_988(client, db, outbox, email_patient):
    path = _phq9_path(db, outbox)
    with time_machine.travel(END + timedelta(days=7, hours=1), tick=False):
        r = client.post(path, data={**{f"item{i}": "0" for i in range(1, 9)}, "item9": "1"})
    assert r.status_code == 200 and "988" in r.text and "911" in r.text
    db.expire_all()
    assert [f.kind for f in db.scalars(select(Flag))] == ["crisis"]


def test_spanish_patient_gets_spanish_pages(client, db, outbox):
    completed_session(db, outbox.stack.ctx.protocol, END, preferred_channel="email", language="es")
    path = _phq9_path(db, outbox)
    with time_machine.travel(END + timedelta(days=7, hours=1), tick=False):
        r = client.get(path)
    assert 'lang="es"' in r.text and "Poco interés o placer en hacer cosas" in r.text
