"""`aftercare demo`: a guided tour on the embedded defaults, on a protocol compressed to seconds."""

from __future__ import annotations

import argparse
import os
import secrets
from datetime import timedelta

from sqlalchemy import select

from ..care.scheduling import sync_session
from ..core.config import DEFAULT_TEMPLATES, load_settings
from ..core.db import utcnow
from ..core.models import Clinician, InfusionSession, Patient, SessionStatus
from ..web.auth import add_clinician, create_token
from .processes import run_parts
from .startup import context, ensure_db

PATIENT_PHONE = "+12125550123"


def run_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("DATABASE_URL", "sqlite:///aftercare-demo.db")
    os.environ.setdefault("FOLLOWUP_PROTOCOL", str(DEFAULT_TEMPLATES / "demo-protocol.yaml"))
    os.environ.setdefault("CLINIC_NAME", "Demo Clinic")
    os.environ.setdefault("CLINIC_PHONE", "(212) 555-0100")
    os.environ.setdefault("PUBLIC_BASE_URL", f"http://{args.host}:{args.port}")
    os.environ.setdefault("DISPATCH_INTERVAL", "2")
    settings = load_settings()  # the demo's defaults are in the environment: the parts it starts read them too
    ctx = context(settings)
    ensure_db(ctx, create=True)
    now = utcnow()
    password = secrets.token_urlsafe(9)
    with ctx.db.scope() as db:
        if db.scalar(select(Clinician).where(Clinician.email == "demo@example.org")) is None:
            add_clinician(db, "demo@example.org", password, now)
        else:
            password = "(unchanged from the last demo)"
        token = create_token(db, "demo", now)
        patient = Patient(
            first_name="Dana",
            last_name="Demo",
            phone=PATIENT_PHONE,
            email="dana@example.org",
            timezone="America/New_York",
            sms_consent=True,
            email_consent=True,
            phq9_by_sms=True,
        )
        session = InfusionSession(
            patient=patient,
            scheduled_start=now + timedelta(seconds=75),
            status=SessionStatus.scheduled,
            driver_name="Sam",
            driver_phone="+12125550199",
        )
        db.add_all([patient, session])
        db.flush()
        sync_session(db, session, now, ctx.protocol)
        sid = session.id
    base = os.environ["PUBLIC_BASE_URL"]
    print(
        f"""
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
""",
        flush=True,
    )
    return run_parts(args.host, args.port)
