"""Test data: fictional numbers (+1 212 555 01xx) and example.org addresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from worker.care.scheduling import sync_session
from worker.core.models import InfusionSession, Patient, SessionStatus
from worker.core.protocol import Protocol

UTC = UTC


def make_patient(db: Session, n: int = 1, **kw) -> Patient:
    data = dict(first_name="Alex", last_name=f"Rivera{n}", phone=f"+121255501{n:02d}",
                email=f"patient{n}@example.org", timezone="America/New_York", language="en",
                preferred_channel="sms", sms_consent=True, email_consent=True)
    data.update(kw)
    p = Patient(**data)
    db.add(p)
    db.flush()
    return p


def make_session(db: Session, patient: Patient, start: datetime, ended: datetime | None = None,
                 driver_phone: str | None = "+12125550199", **kw) -> InfusionSession:
    s = InfusionSession(patient=patient, scheduled_start=start, ended_at=ended, driver_name="Sam",
                        driver_phone=driver_phone,
                        status=SessionStatus.completed if ended else SessionStatus.scheduled, **kw)
    db.add(s)
    db.flush()
    return s


def completed_session(db: Session, protocol: Protocol, ended: datetime, patient: Patient | None = None,
                      now: datetime | None = None, **patient_kw) -> InfusionSession:
    """A one-hour session that ended at `ended`, its messages scheduled (as of `now`), committed."""
    s = make_session(db, patient or make_patient(db, **patient_kw), ended - timedelta(hours=1), ended=ended)
    sync_session(db, s, now or ended, protocol)
    db.commit()
    return s


def at(text: str) -> datetime:
    """'2027-03-13T23:30-05:00' -> aware datetime."""
    return datetime.fromisoformat(text)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
