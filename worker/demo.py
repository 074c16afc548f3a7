"""`aftercare demo`: a guided tour on the embedded defaults, on a protocol compressed to seconds."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

from .config import DEFAULT_TEMPLATES, reset_settings

PATIENT_PHONE = "+12125550123"


def run_demo(args) -> int:
    os.environ.setdefault("DATABASE_URL", "sqlite:///aftercare-demo.db")
    os.environ.setdefault("FOLLOWUP_PROTOCOL", str(DEFAULT_TEMPLATES / "demo-protocol.yaml"))
    os.environ.setdefault("CLINIC_NAME", "Demo Clinic")
    os.environ.setdefault("CLINIC_PHONE", "(212) 555-0100")
    os.environ.setdefault("PUBLIC_BASE_URL", f"http://{args.host}:{args.port}")
    os.environ.setdefault("DISPATCH_INTERVAL", "2")
    reset_settings()
    from . import cli
    from .auth import add_clinician, create_token
    from .db import session_scope, utcnow
    from .models import Clinician, InfusionSession, Patient, SessionStatus
    from .scheduling import sync_session

    cli._check_startup()
    cli._ensure_db(create=True)
    now = utcnow()
    password = secrets.token_urlsafe(9)
    with session_scope() as db:
        if db.query(Clinician).filter_by(email="demo@example.org").first() is None:
            add_clinician(db, "demo@example.org", password, now)
        else:
            password = "(unchanged from the last demo)"
        token = create_token(db, "demo", now)
        patient = Patient(first_name="Dana", last_name="Demo", phone=PATIENT_PHONE, email="dana@example.org",
                          timezone="America/New_York", sms_consent=True, email_consent=True, phq9_by_sms=True)
        session = InfusionSession(patient=patient, scheduled_start=now + timedelta(seconds=75),
                                  status=SessionStatus.scheduled.value, driver_name="Sam",
                                  driver_phone="+12125550199")
        db.add_all([patient, session])
        db.flush()
        sync_session(db, session, now)
        sid = session.id
    base = os.environ["PUBLIC_BASE_URL"]
    print(f"""
Aftercare demo: one patient (Dana, {PATIENT_PHONE}) and one session (#{sid}) starting in 75 seconds,
on a protocol where hours are seconds. Messages appear below as [outbox] lines.

In another terminal (same directory, same virtualenv):
  1. In ~15 s Dana is asked about her ride home. Answer:
       aftercare reply {PATIENT_PHONE} YES --url {base}
  2. Discharge her (this starts pickup notice, home check, tips, mood and PHQ-9 steps):
       curl -X POST -H "Authorization: Bearer {token}" {base}/api/sessions/{sid}/complete
  3. Answer as they arrive:  aftercare reply {PATIENT_PHONE} HOME --url {base}
                             aftercare reply {PATIENT_PHONE} "a 3 today" --url {base}
     Try STOP, START, HELP, or a crisis message, and watch the flags:
       curl -H "Authorization: Bearer {token}" {base}/api/flags
  4. Every message of the session:
       curl -H "Authorization: Bearer {token}" {base}/api/sessions/{sid}/messages

Clinician login: demo@example.org / {password}
API token: {token}
""", flush=True)
    return cli.cmd_run(args)
