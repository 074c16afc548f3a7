"""Check-ins end to end over real HTTP: uvicorn, a Celery worker and beat on Redis, the twilio
SDK against the fake Twilio server, inbound SMS signed exactly as Twilio signs them."""

import time
from contextlib import ExitStack

import httpx
import pytest

from tests.support.fake_twilio import use_protocol
from tests.support.live import free_port, post_signed_sms, wait_for, web_server, worker_and_beat

pytestmark = pytest.mark.redis
PATIENT_PHONE = "+12125550121"
ONCALL = "+12125550190"


@pytest.fixture
def live(fake_twilio, redis_url, token, monkeypatch, tmp_path, stack):
    """`live()` starts the app, a worker and beat on the environment as it is then (the test's protocol
    is set first: a running process does not re-read its configuration); returns (base, api, fake)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("PUBLIC_BASE_URL", base)
    monkeypatch.setenv("BROKER_URL", redis_url)
    monkeypatch.setenv("DISPATCH_INTERVAL", "1")
    monkeypatch.setenv("ONCALL_SMS", ONCALL)
    with ExitStack() as running:
        def start():
            ctx = stack.reload()
            running.enter_context(web_server(ctx, port))
            running.enter_context(worker_and_beat(stack.outbound(), str(tmp_path / "beat")))
            api = running.enter_context(httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                                     timeout=10))
            return base, api, fake_twilio

        yield start


def _start(api, phq9_by_sms=False):
    pid = api.post("/api/patients", json={"first_name": "Rosa", "phone": PATIENT_PHONE, "sms_consent": True,
                                          "phq9_by_sms": phq9_by_sms}).json()["id"]
    sid = api.post("/api/sessions", json={"patient_id": pid,
                                          "scheduled_start": "2026-01-01T09:00:00-05:00"}).json()["id"]
    assert api.post(f"/api/sessions/{sid}/complete").status_code == 200
    return pid, sid


def test_phq9_by_sms_item9_reaches_on_call_within_seconds(live, monkeypatch, tmp_path):
    use_protocol(monkeypatch, tmp_path, {"name": "phq9_week1", "template": "phq9", "expects": "phq9"})
    base, api, fake = live()
    pid, sid = _start(api, phq9_by_sms=True)
    to_patient = lambda: fake.sent(to=PATIENT_PHONE)  # noqa: E731
    assert wait_for(lambda: len(to_patient()) >= 2), "intro and first question not sent"
    assert "Over the last 2 weeks" in to_patient()[0].body
    for n, answer in enumerate(["1", "1", "0", "2", "1", "0", "1", "0"], start=1):
        assert wait_for(lambda n=n: any(m.body.startswith(f"{n}/9") for m in to_patient())), f"question {n} missing"
        assert post_signed_sms(base, base, fake.auth_token, PATIENT_PHONE, answer).status_code == 200
    assert wait_for(lambda: any(m.body.startswith("9/9") for m in to_patient()))
    t0 = time.time()
    post_signed_sms(base, base, fake.auth_token, PATIENT_PHONE, "2")
    assert wait_for(lambda: fake.sent(to=ONCALL), timeout=10), "no on-call alert"
    latency = time.time() - t0
    assert latency < 5, f"on-call alert took {latency:.2f}s"
    assert "/flags/" in fake.sent(to=ONCALL)[0].body and "Rosa" not in fake.sent(to=ONCALL)[0].body
    assert wait_for(lambda: any("988" in m.body and "911" in m.body for m in to_patient()))
    (flag,) = api.get("/api/flags", params={"kind": "crisis"}).json()
    assert flag["patient_id"] == pid and flag["session_id"] == sid
    series = api.get(f"/api/patients/{pid}/checkins").json()["phq9"]
    assert series[0]["items"] == [1, 1, 0, 2, 1, 0, 1, 0, 2] and series[0]["score"] == 8


def test_stop_silences_the_number_and_start_restores_it(live, monkeypatch, tmp_path):
    use_protocol(monkeypatch, tmp_path,
                 {"name": "home_safe", "offset": "3s", "template": "home_safe", "expects": "home"},
                 {"name": "recovery_tips", "offset": "7s", "template": "recovery_tips", "expects": "none"})
    base, api, fake = live()
    post_signed_sms(base, base, fake.auth_token, PATIENT_PHONE, "STOP")
    _pid, sid = _start(api)
    msgs = lambda: {m["step"]: m for m in api.get(f"/api/sessions/{sid}/messages").json()}  # noqa: E731
    assert wait_for(lambda: msgs()["home_safe"]["status"] == "skipped", timeout=10)
    assert fake.sent(to=PATIENT_PHONE) == []
    post_signed_sms(base, base, fake.auth_token, PATIENT_PHONE, "START")
    assert wait_for(lambda: fake.sent(to=PATIENT_PHONE), timeout=12)
    assert wait_for(lambda: msgs()["recovery_tips"]["status"] in ("sent", "delivered"))
    assert "988" in fake.sent(to=PATIENT_PHONE)[0].body
