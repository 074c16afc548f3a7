"""Scheduling: quiet hours in the patient's zone (across DST), idempotent sync, skip reasons."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from tests.support.factories import at, make_patient, make_session
from worker.care.scheduling import defer_for_quiet_hours, sync_session
from worker.core.models import Message, SessionStatus, SmsOptOut
from worker.core.protocol import QuietHours, parse_protocol

UTC = UTC
NIGHT = QuietHours.parse("21:00-08:00")


@pytest.mark.parametrize(
    "zone, due_local, expected_local",
    [
        # spring-forward night in New York (2027-03-14 02:00 -> 03:00): 23:30 goes at 08:00 EDT
        ("America/New_York", "2027-03-13T23:30", "2027-03-14T08:00"),
        # fall-back night (2027-11-07 02:00 -> 01:00): still 08:00 local, now EST
        ("America/New_York", "2027-11-07T01:30", "2027-11-07T08:00"),
        # just before the end and exactly at the start/end of the window
        ("America/New_York", "2027-06-01T07:59", "2027-06-01T08:00"),
        ("America/New_York", "2027-06-01T21:00", "2027-06-02T08:00"),
        ("America/New_York", "2027-06-01T08:00", "2027-06-01T08:00"),
        ("America/New_York", "2027-06-01T20:59", "2027-06-01T20:59"),
        # after midnight, inside the window: same day's end
        ("America/New_York", "2027-06-01T03:00", "2027-06-01T08:00"),
        # another zone: Los Angeles on its own spring-forward night
        ("America/Los_Angeles", "2027-03-13T22:15", "2027-03-14T08:00"),
        # a zone without DST
        ("America/Phoenix", "2027-03-13T23:30", "2027-03-14T08:00"),
        # Spanish patient in Madrid (EU switches on 2027-03-28)
        ("Europe/Madrid", "2027-03-27T22:00", "2027-03-28T08:00"),
    ],
)
def test_quiet_hours_defer_to_local_morning(zone, due_local, expected_local):
    tz = ZoneInfo(zone)
    due = datetime.fromisoformat(due_local).replace(tzinfo=tz).astimezone(UTC)
    got = defer_for_quiet_hours(due, tz, NIGHT)
    assert got.astimezone(tz).replace(tzinfo=None) == datetime.fromisoformat(expected_local)


def test_spring_forward_morning_is_eight_edt_in_utc():
    tz = ZoneInfo("America/New_York")
    due = datetime(2027, 3, 13, 23, 30, tzinfo=tz)
    assert defer_for_quiet_hours(due, tz, NIGHT) == datetime(2027, 3, 14, 12, 0, tzinfo=UTC)


def test_same_day_quiet_window_ends_same_day():
    tz = ZoneInfo("America/New_York")
    lunch = QuietHours.parse("12:00-13:30")
    due = datetime(2027, 6, 1, 12, 15, tzinfo=tz)
    assert defer_for_quiet_hours(due, tz, lunch).astimezone(tz).time().isoformat() == "13:30:00"


def test_no_quiet_hours_leaves_time_alone():
    tz = ZoneInfo("America/New_York")
    due = datetime(2027, 6, 1, 23, 0, tzinfo=tz)
    assert defer_for_quiet_hours(due, tz, None) == due


def _rows(db, session):
    db.expire_all()
    return {(m.step, m.channel): m for m in db.scalars(select(Message).where(Message.session_id == session.id))}


def test_new_session_schedules_only_start_anchored_steps(db, ctx):
    s = make_session(db, make_patient(db), at("2027-06-02T10:00-04:00"))
    sync_session(db, s, at("2027-06-01T09:00-04:00"), ctx.protocol)
    db.commit()
    rows = _rows(db, s)
    assert set(rows) == {("ride_confirm", "sms")}
    assert rows[("ride_confirm", "sms")].scheduled_for == at("2027-06-01T10:00-04:00")


def test_ride_confirm_inside_quiet_hours_waits_for_morning(db, ctx):
    s = make_session(db, make_patient(db), at("2027-06-02T07:00-04:00"))  # start-24h = 07:00 local
    sync_session(db, s, at("2027-05-30T09:00-04:00"), ctx.protocol)
    db.commit()
    assert _rows(db, s)[("ride_confirm", "sms")].scheduled_for == at("2027-06-01T08:00-04:00")


def test_completing_schedules_end_steps_and_is_idempotent(db, ctx):
    now = at("2027-06-02T12:00-04:00")
    s = make_session(db, make_patient(db), at("2027-06-02T10:00-04:00"))
    sync_session(db, s, now, ctx.protocol)
    s.status, s.ended_at = SessionStatus.completed, now
    first = sync_session(db, s, now, ctx.protocol)
    second = sync_session(db, s, now, ctx.protocol)
    db.commit()
    rows = _rows(db, s)
    assert first.created == 7 and second.created == 0  # pickup, home, tips x2, mood x2, phq9
    assert len(rows) == 8
    assert rows[("pickup_notice", "sms")].recipient == "driver"
    assert rows[("pickup_notice", "sms")].scheduled_for == now
    assert rows[("home_safe", "sms")].scheduled_for == now + timedelta(hours=2)
    assert {("recovery_tips", "sms"), ("recovery_tips", "email")} <= set(rows)
    assert rows[("phq9_week1", "sms")].scheduled_for == now + timedelta(days=7)


def test_home_safe_ignores_quiet_hours_but_tips_wait(db, ctx):
    end = at("2027-06-02T19:30-04:00")  # home_safe 21:30, tips 22:30 local
    s = make_session(db, make_patient(db), at("2027-06-02T18:00-04:00"), ended=end)
    sync_session(db, s, end, ctx.protocol)
    db.commit()
    rows = _rows(db, s)
    assert rows[("home_safe", "sms")].scheduled_for == at("2027-06-02T21:30-04:00")
    assert rows[("recovery_tips", "sms")].scheduled_for == at("2027-06-03T08:00-04:00")


def test_reschedule_retimes_pending_start_steps(db, ctx):
    s = make_session(db, make_patient(db), at("2027-06-10T10:00-04:00"))
    sync_session(db, s, at("2027-06-01T09:00-04:00"), ctx.protocol)
    s.scheduled_start = at("2027-06-12T11:00-04:00")
    result = sync_session(db, s, at("2027-06-01T09:05-04:00"), ctx.protocol)
    db.commit()
    assert result.retimed == 1
    row = _rows(db, s)[("ride_confirm", "sms")]
    assert row.scheduled_for == row.next_attempt_at == at("2027-06-11T11:00-04:00")


def test_cancel_cancels_pending_but_keeps_sent(db, ctx):
    s = make_session(db, make_patient(db), at("2027-06-10T10:00-04:00"), ended=at("2027-06-10T11:00-04:00"))
    sync_session(db, s, at("2027-06-10T11:00-04:00"), ctx.protocol)
    db.commit()
    sent = _rows(db, s)[("pickup_notice", "sms")]
    sent.status = "sent"
    s.status = SessionStatus.cancelled
    result = sync_session(db, s, at("2027-06-10T11:05-04:00"), ctx.protocol)
    db.commit()
    rows = _rows(db, s)
    assert result.cancelled == 7
    assert rows[("pickup_notice", "sms")].status == "sent"
    assert {m.status for k, m in rows.items() if k != ("pickup_notice", "sms")} == {"cancelled"}


@pytest.mark.parametrize(
    "patient_kw, driver_phone, opt_out, step, reason",
    [
        ({"sms_consent": False, "email_consent": False}, "+12125550199", None, "home_safe", "no SMS consent"),
        ({"phone": None, "preferred_channel": "email"}, "+12125550199", None, "home_safe", "no phone number"),
        ({}, None, None, "pickup_notice", "no driver phone"),
        ({}, "+12125550199", "+12125550101", "home_safe", "opted out of SMS"),
        ({}, "+12125550199", "+12125550199", "pickup_notice", "driver opted out of SMS"),
        ({"email": None}, "+12125550199", None, ("recovery_tips", "email"), "no email address"),
        ({"email_consent": False}, "+12125550199", None, ("recovery_tips", "email"), "no email consent"),
    ],
)
def test_ineligible_recipient_is_skipped_with_reason(db, ctx, patient_kw, driver_phone, opt_out, step, reason):
    if opt_out:
        db.add(SmsOptOut(phone=opt_out))
    p = make_patient(db, **patient_kw)
    s = make_session(db, p, at("2027-06-10T10:00-04:00"), ended=at("2027-06-10T11:00-04:00"),
                     driver_phone=driver_phone)
    sync_session(db, s, at("2027-06-10T11:00-04:00"), ctx.protocol)
    db.commit()
    key = step if isinstance(step, tuple) else (step, "sms")
    row = _rows(db, s)[key]
    assert (row.status, row.error) == ("skipped", reason)


def test_preferred_channel_falls_back_to_the_consented_one(db, ctx):
    p = make_patient(db, preferred_channel="sms", sms_consent=False, email_consent=True)
    s = make_session(db, p, at("2027-06-10T10:00-04:00"))
    sync_session(db, s, at("2027-06-01T10:00-04:00"), ctx.protocol)
    db.commit()
    assert set(_rows(db, s)) == {("ride_confirm", "email")}


def test_expires_at_follows_expires_after(db, ctx):
    s = make_session(db, make_patient(db), at("2027-06-10T10:00-04:00"))
    sync_session(db, s, at("2027-06-01T10:00-04:00"), ctx.protocol)
    db.commit()
    row = _rows(db, s)[("ride_confirm", "sms")]
    assert row.expires_at - row.scheduled_for == timedelta(hours=21)


def test_custom_protocol_step_offsets_in_seconds(db, tmp_path):
    proto = parse_protocol({"quiet_hours": "", "steps": [
        {"name": "ping", "anchor": "session_end", "offset": "1m30s", "to": "patient", "channel": "sms",
         "template": "recovery_tips"}]})
    end = at("2027-06-10T23:00-04:00")
    s = make_session(db, make_patient(db), end - timedelta(hours=1), ended=end)
    sync_session(db, s, end, proto)
    db.commit()
    assert _rows(db, s)[("ping", "sms")].scheduled_for == end + timedelta(seconds=90)


def test_time_machine_now_drives_api_scheduling(client):
    with time_machine.travel(at("2027-03-12T12:00-05:00"), tick=False):
        pid = client.post("/api/patients", json={"first_name": "Ana", "phone": "+1 212 555 0111",
                                                 "sms_consent": True, "timezone": "America/New_York"}).json()["id"]
        sid = client.post("/api/sessions", json={"patient_id": pid,
                                                 "scheduled_start": "2027-03-14T07:30:00-04:00"}).json()["id"]
        msgs = client.get(f"/api/sessions/{sid}/messages").json()
    # start-24h = 2027-03-13 07:30 EST is inside quiet hours -> 08:00 EST the same morning
    assert msgs[0]["step"] == "ride_confirm"
    assert datetime.fromisoformat(msgs[0]["scheduled_for"]) == at("2027-03-13T08:00-05:00")
