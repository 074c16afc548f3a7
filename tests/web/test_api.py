"""The JSON API: tokens, validation naming the field, idempotent session lifecycle."""

from datetime import UTC, datetime

import pytest
import time_machine

PATIENT = {"first_name": "Ana", "last_name": "Lopez", "phone": "(212) 555-0111", "email": "ana@example.org",
           "timezone": "America/Chicago", "language": "es", "preferred_channel": "sms", "sms_consent": True,
           "email_consent": True}


def _patient(client, **kw):
    r = client.post("/api/patients", json={**PATIENT, **kw})
    assert r.status_code == 201, r.text
    return r.json()


def _session(client, pid, start="2027-06-10T10:00:00-05:00", **kw):
    r = client.post("/api/sessions", json={"patient_id": pid, "scheduled_start": start,
                                           "driver_name": "Sam", "driver_phone": "212-555-0199", **kw})
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_patient_is_created_with_e164_phone(client):
    p = _patient(client)
    assert p["phone"] == "+12125550111" and p["language"] == "es" and p["sms_opted_out"] is False


def test_missing_token_is_401(client):
    r = client.post("/api/patients", json=PATIENT, headers={"Authorization": ""})
    assert r.status_code == 401 and r.json()["field"] == "Authorization"


def test_wrong_token_is_401(client):
    r = client.get("/api/sessions/1/messages", headers={"Authorization": "Bearer act_nope"})
    assert r.status_code == 401


@pytest.mark.parametrize("change, field", [
    ({"phone": "not a phone"}, "phone"),
    ({"phone": "+1 212"}, "phone"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"email": "nobody"}, "email"),
    ({"language": "fr"}, "language"),
    ({"preferred_channel": "fax"}, "preferred_channel"),
    ({"first_name": ""}, "first_name"),
    ({"sms_consent": "perhaps"}, "sms_consent"),
    ({"favourite_colour": "blue"}, "favourite_colour"),
    ({"phone": None, "preferred_channel": "sms"}, "phone"),
])
def test_bad_patient_field_is_422_naming_it(client, change, field):
    r = client.post("/api/patients", json={**PATIENT, **change})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and field in r.json()["error"]


def test_patient_time_zone_defaults_to_the_clinic(client):
    body = {k: v for k, v in PATIENT.items() if k != "timezone"}
    assert client.post("/api/patients", json=body).json()["timezone"] == "America/New_York"


@pytest.mark.parametrize("body, field", [
    ({"patient_id": 999, "scheduled_start": "2027-06-10T10:00:00-05:00"}, "patient_id"),
    ({"scheduled_start": "2027-06-10T10:00:00"}, "scheduled_start"),  # naive
    ({"scheduled_start": "next tuesday"}, "scheduled_start"),
    ({"driver_phone": "call me"}, "driver_phone"),
    ({"patient_id": "abc"}, "patient_id"),
])
def test_bad_session_field_is_422_naming_it(client, body, field):
    pid = _patient(client)["id"]
    r = client.post("/api/sessions", json={"patient_id": pid, "scheduled_start": "2027-06-10T10:00:00-05:00",
                                           **body})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_malformed_json_is_422_not_500(client):
    r = client.post("/api/patients", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_session_lifecycle_is_idempotent(client):
    pid = _patient(client)["id"]
    with time_machine.travel(datetime(2027, 6, 1, 12, tzinfo=UTC), tick=False):
        s = _session(client, pid, external_id="ehr-77")
        again = client.post("/api/sessions", json={"patient_id": pid, "scheduled_start": "2027-06-10T10:00:00-05:00",
                                                   "external_id": "ehr-77"})
        assert again.status_code == 200 and again.json()["id"] == s["id"]
        assert [m["step"] for m in client.get(f"/api/sessions/{s['id']}/messages").json()] == ["ride_confirm"]
    with time_machine.travel(datetime(2027, 6, 10, 16, 30, tzinfo=UTC), tick=False):
        one = client.post(f"/api/sessions/{s['id']}/complete").json()
        two = client.post(f"/api/sessions/{s['id']}/complete").json()
        assert one == two and one["status"] == "completed"
    msgs = client.get(f"/api/sessions/{s['id']}/messages").json()
    assert len(msgs) == 8 and len({(m["step"], m["channel"]) for m in msgs}) == 8
    assert set(msgs[0]) >= {"id", "step", "recipient", "channel", "status", "scheduled_for", "sent_at",
                            "provider_id", "error"}


def test_complete_with_ended_at_times_end_steps(client):
    pid = _patient(client)["id"]
    s = _session(client, pid, start="2026-01-10T10:00:00-06:00")
    r = client.post(f"/api/sessions/{s['id']}/complete", json={"ended_at": "2026-01-10T11:30:00-06:00"})
    assert r.status_code == 200 and r.json()["ended_at"].startswith("2026-01-10T17:30")
    msgs = {m["step"]: m for m in client.get(f"/api/sessions/{s['id']}/messages").json()}
    assert msgs["home_safe"]["scheduled_for"].startswith("2026-01-10T19:30")


def test_complete_in_the_future_is_refused(client):
    s = _session(client, _patient(client)["id"])
    r = client.post(f"/api/sessions/{s['id']}/complete", json={"ended_at": "2999-01-01T00:00:00+00:00"})
    assert r.status_code == 422 and r.json()["field"] == "ended_at"


def test_cancel_is_idempotent_and_cancels_pending(client):
    s = _session(client, _patient(client)["id"], start="2099-06-10T10:00:00-05:00")
    assert client.post(f"/api/sessions/{s['id']}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/api/sessions/{s['id']}/cancel").status_code == 200
    assert {m["status"] for m in client.get(f"/api/sessions/{s['id']}/messages").json()} == {"cancelled"}
    assert client.post(f"/api/sessions/{s['id']}/complete").status_code == 409


def test_patch_reschedules_pending_messages(client):
    s = _session(client, _patient(client)["id"], start="2099-06-10T10:00:00-05:00")
    r = client.patch(f"/api/sessions/{s['id']}", json={"scheduled_start": "2099-06-12T09:00:00-05:00"})
    assert r.status_code == 200
    (msg,) = client.get(f"/api/sessions/{s['id']}/messages").json()
    assert msg["scheduled_for"].startswith("2099-06-11T14:00")
    bad = client.patch(f"/api/sessions/{s['id']}", json={"scheduled_start": "2099-06-12T09:00:00"})
    assert bad.status_code == 422 and bad.json()["field"] == "scheduled_start"


def test_unknown_session_is_404_naming_id(client):
    r = client.post("/api/sessions/4242/complete")
    assert r.status_code == 404 and r.json()["field"] == "id"


def test_repost_of_patient_external_id_returns_the_same_patient(client):
    a = _patient(client, external_id="mrn-1")
    b = client.post("/api/patients", json={**PATIENT, "external_id": "mrn-1"})
    assert b.status_code == 200 and b.json()["id"] == a["id"]


def test_healthz_reports_database_and_broker(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["database"] == "ok" and r.json()["broker"] == "ok"


@pytest.fixture
def broker_down(monkeypatch, stack):
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    stack.reload()


def test_healthz_is_503_when_the_broker_is_down(broker_down, client):
    # broker_down first: the app captures the context when `client` is built.
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["broker"].startswith("down")


def test_api_audits_who_did_what(client, db):
    from sqlalchemy import select

    from worker.core.models import AuditEvent

    s = _session(client, _patient(client)["id"])
    actions = db.scalars(select(AuditEvent.action)).all()
    assert "patient.create" in actions and "session.create" in actions
    assert all(a.startswith("token:test-ehr") for a in db.scalars(select(AuditEvent.actor)))
    assert s["id"]
