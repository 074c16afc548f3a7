"""The JSON API (SPEC §5): bearer tokens; bad input is a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterator, Literal, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import flags as flag_ops
from .audit import record as audit
from .auth import check_token
from .db import new_session, utcnow
from .models import (
    Checkin,
    Flag,
    InfusionSession,
    Message,
    Patient,
    Reply,
    SessionStatus,
    SmsOptOut,
)
from .phones import to_e164
from .scheduling import sync_session

router = APIRouter(prefix="/api")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, field: Optional[str] = None):
        super().__init__(status_code=status, detail={"error": message, "field": field})


def get_db() -> Iterator[Session]:
    db = new_session()
    try:
        yield db
    finally:
        db.close()


def require_token(request: Request, authorization: Optional[str] = Header(default=None),
                  db: Session = Depends(get_db)) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise ApiError(401, "missing bearer token", "Authorization")
    token = check_token(db, authorization.split(" ", 1)[1].strip(), utcnow())
    if token is None:
        raise ApiError(401, "invalid or revoked token", "Authorization")
    db.commit()
    return f"token:{token.name}"


# -- input ------------------------------------------------------------------------------------
class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _phone(v: Optional[str]) -> Optional[str]:
    if v in (None, ""):
        return None
    return to_e164(v)


def _aware(v: Optional[datetime]) -> Optional[datetime]:
    if v is not None and (v.tzinfo is None or v.utcoffset() is None):
        raise ValueError("needs a UTC offset, e.g. 2026-11-24T09:00:00-05:00")
    return v.astimezone(timezone.utc) if v is not None else None


class PatientIn(_In):
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(default="", max_length=100)
    phone: Optional[str] = None
    email: Optional[str] = Field(default=None, max_length=320)
    timezone: Optional[str] = None
    language: Literal["en", "es"] = "en"
    preferred_channel: Literal["sms", "email"] = "sms"
    sms_consent: bool = False
    email_consent: bool = False
    phq9_by_sms: bool = False
    external_id: Optional[str] = Field(default=None, max_length=100)

    _phone = field_validator("phone")(classmethod(lambda cls, v: _phone(v)))

    @field_validator("email")
    @classmethod
    def _email(cls, v: Optional[str]) -> Optional[str]:
        if v in (None, ""):
            return None
        if not EMAIL.match(v):
            raise ValueError("not an email address")
        return v.lower()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: Optional[str]) -> Optional[str]:
        if v in (None, ""):
            return None
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v


class SessionIn(_In):
    patient_id: int
    scheduled_start: datetime
    driver_name: Optional[str] = Field(default=None, max_length=200)
    driver_phone: Optional[str] = None
    external_id: Optional[str] = Field(default=None, max_length=100)

    _start = field_validator("scheduled_start")(classmethod(lambda cls, v: _aware(v)))
    _dphone = field_validator("driver_phone")(classmethod(lambda cls, v: _phone(v)))


class CompleteIn(_In):
    ended_at: Optional[datetime] = None

    _end = field_validator("ended_at")(classmethod(lambda cls, v: _aware(v)))


class SessionPatch(_In):
    scheduled_start: Optional[datetime] = None
    driver_name: Optional[str] = Field(default=None, max_length=200)
    driver_phone: Optional[str] = None

    _start = field_validator("scheduled_start")(classmethod(lambda cls, v: _aware(v)))
    _dphone = field_validator("driver_phone")(classmethod(lambda cls, v: _phone(v)))


class AckIn(_In):
    note: Optional[str] = Field(default=None, max_length=4000)


# -- output -----------------------------------------------------------------------------------
def _iso(v: Optional[datetime]) -> Optional[str]:
    return v.isoformat() if v else None


def patient_out(db: Session, p: Patient) -> dict[str, Any]:
    return {
        "id": p.id, "first_name": p.first_name, "last_name": p.last_name, "phone": p.phone, "email": p.email,
        "timezone": p.timezone, "language": p.language, "preferred_channel": p.preferred_channel,
        "sms_consent": p.sms_consent, "email_consent": p.email_consent, "phq9_by_sms": p.phq9_by_sms,
        "external_id": p.external_id,
        "sms_opted_out": bool(p.phone and db.get(SmsOptOut, p.phone)),
    }


def session_out(s: InfusionSession) -> dict[str, Any]:
    return {
        "id": s.id, "status": s.status, "patient_id": s.patient_id, "scheduled_start": _iso(s.scheduled_start),
        "ended_at": _iso(s.ended_at), "driver_name": s.driver_name, "driver_phone": s.driver_phone,
        "external_id": s.external_id,
    }


def message_out(m: Message) -> dict[str, Any]:
    return {
        "id": m.id, "step": m.step, "recipient": m.recipient, "channel": m.channel, "status": m.status,
        "scheduled_for": _iso(m.scheduled_for), "sent_at": _iso(m.sent_at), "provider_id": m.provider_id,
        "error": m.error, "kind": m.kind, "part": m.part, "attempts": m.attempts,
        "delivered_at": _iso(m.delivered_at),
    }


def flag_out(f: Flag) -> dict[str, Any]:
    return {
        "id": f.id, "kind": f.kind, "patient_id": f.patient_id, "session_id": f.session_id, "step": f.step,
        "reply_id": f.reply_id, "raised_at": _iso(f.raised_at), "acknowledged_at": _iso(f.acknowledged_at),
        "acknowledged_by": f.acknowledged_by, "note": f.note, "detail": f.detail, "message_id": f.message_id,
    }


def reply_out(r: Reply) -> dict[str, Any]:
    acks = [f.acknowledged_at for f in r.flags]
    return {
        "id": r.id, "patient_id": r.patient_id, "session_id": r.session_id, "step": r.step, "channel": r.channel,
        "body": r.body, "received_at": _iso(r.received_at), "score": r.score, "outcome": r.outcome,
        "flags": [f.kind for f in r.flags],
        "acknowledged_at": _iso(max(acks)) if acks and all(acks) else None,
    }


# -- patients ---------------------------------------------------------------------------------
@router.post("/patients", status_code=201)
def create_patient(body: PatientIn, request: Request, actor: str = Depends(require_token),
                   db: Session = Depends(get_db)):
    from .config import get_settings

    if body.external_id:
        existing = db.scalar(select(Patient).where(Patient.external_id == body.external_id))
        if existing is not None:
            return JSONResponse(patient_out(db, existing), status_code=200)
    if body.preferred_channel == "sms" and not body.phone:
        raise ApiError(422, "phone: required when preferred_channel is sms", "phone")
    if body.preferred_channel == "email" and not body.email:
        raise ApiError(422, "email: required when preferred_channel is email", "email")
    data = body.model_dump()
    data["timezone"] = data["timezone"] or get_settings().clinic_timezone
    patient = Patient(**data, created_at=utcnow())
    db.add(patient)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        existing = db.scalar(select(Patient).where(Patient.external_id == body.external_id))
        if existing is None:
            raise
        return JSONResponse(patient_out(db, existing), status_code=200)
    audit(db, actor, "patient.create", "patient", patient.id)
    db.commit()
    return patient_out(db, patient)


def _patient(db: Session, patient_id: int, field: str = "patient_id", status: int = 404) -> Patient:
    p = db.get(Patient, patient_id)
    if p is None:
        raise ApiError(status, f"{field}: no patient {patient_id}", field)
    return p


@router.get("/patients/{patient_id}")
def get_patient(patient_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)):
    p = _patient(db, patient_id, "id")
    audit(db, actor, "patient.view", "patient", p.id)
    db.commit()
    return patient_out(db, p)


# -- sessions ---------------------------------------------------------------------------------
def _session(db: Session, session_id: int) -> InfusionSession:
    s = db.get(InfusionSession, session_id)
    if s is None:
        raise ApiError(404, f"id: no session {session_id}", "id")
    return s


@router.post("/sessions", status_code=201)
def create_session(body: SessionIn, actor: str = Depends(require_token), db: Session = Depends(get_db)):
    if body.external_id:
        existing = db.scalar(select(InfusionSession).where(InfusionSession.external_id == body.external_id))
        if existing is not None:
            return JSONResponse(session_out(existing), status_code=200)
    _patient(db, body.patient_id, status=422)
    now = utcnow()
    s = InfusionSession(**body.model_dump(), status=SessionStatus.scheduled.value, created_at=now, updated_at=now)
    db.add(s)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        existing = db.scalar(select(InfusionSession).where(InfusionSession.external_id == body.external_id))
        if existing is None:
            raise
        return JSONResponse(session_out(existing), status_code=200)
    sync_session(db, s, now)
    audit(db, actor, "session.create", "session", s.id)
    db.commit()
    return session_out(s)


@router.get("/sessions/{session_id}")
def get_session(session_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)):
    return session_out(_session(db, session_id))


@router.post("/sessions/{session_id}/complete")
def complete_session(session_id: int, body: Optional[CompleteIn] = None, actor: str = Depends(require_token),
                     db: Session = Depends(get_db)):
    s = _session(db, session_id)
    if s.status == SessionStatus.cancelled.value:
        raise ApiError(409, "status: the session is cancelled", "status")
    now = utcnow()
    ended = (body.ended_at if body else None)
    if ended is not None and ended > now:
        raise ApiError(422, "ended_at: is in the future", "ended_at")
    if s.status != SessionStatus.completed.value or (ended is not None and ended != s.ended_at):
        s.status = SessionStatus.completed.value
        s.ended_at = ended or s.ended_at or now
        s.updated_at = now
        audit(db, actor, "session.complete", "session", s.id)
    sync_session(db, s, now)
    db.commit()
    return session_out(s)


@router.post("/sessions/{session_id}/cancel")
def cancel_session(session_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)):
    s = _session(db, session_id)
    now = utcnow()
    if s.status != SessionStatus.cancelled.value:
        s.status = SessionStatus.cancelled.value
        s.updated_at = now
        audit(db, actor, "session.cancel", "session", s.id)
    sync_session(db, s, now)
    db.commit()
    return session_out(s)


@router.patch("/sessions/{session_id}")
def patch_session(session_id: int, body: SessionPatch, actor: str = Depends(require_token),
                  db: Session = Depends(get_db)):
    s = _session(db, session_id)
    if s.status == SessionStatus.cancelled.value:
        raise ApiError(409, "status: the session is cancelled", "status")
    changes = body.model_dump(exclude_unset=True)
    if "scheduled_start" in changes and changes["scheduled_start"] is None:
        raise ApiError(422, "scheduled_start: cannot be null", "scheduled_start")
    if "scheduled_start" in changes and s.status == SessionStatus.completed.value:
        raise ApiError(409, "scheduled_start: the session is already completed", "scheduled_start")
    now = utcnow()
    for k, v in changes.items():
        setattr(s, k, v)
    s.updated_at = now
    sync_session(db, s, now)
    audit(db, actor, "session.update", "session", s.id, {"fields": sorted(changes)})
    db.commit()
    return session_out(s)


@router.get("/sessions/{session_id}/messages")
def session_messages(session_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)):
    _session(db, session_id)
    rows = db.scalars(select(Message).where(Message.session_id == session_id).order_by(Message.scheduled_for,
                                                                                        Message.id))
    return [message_out(m) for m in rows]


# -- replies, flags, check-ins ----------------------------------------------------------------
def _since(value: Optional[str], field: str = "since") -> Optional[datetime]:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, f"{field}: not an ISO 8601 date-time", field) from None
    if dt.tzinfo is None:
        raise ApiError(422, f"{field}: needs a UTC offset", field)
    return dt


@router.get("/replies")
def list_replies(flag: Optional[str] = None, since: Optional[str] = None, patient_id: Optional[int] = None,
                 limit: int = Query(default=200, ge=1, le=1000),
                 actor: str = Depends(require_token), db: Session = Depends(get_db)):
    q = select(Reply).order_by(Reply.received_at.desc(), Reply.id.desc()).limit(limit)
    if flag:
        _flag_kind(flag, "flag")
        q = q.where(Reply.id.in_(select(Flag.reply_id).where(Flag.kind == flag)))
    if since_dt := _since(since):
        q = q.where(Reply.received_at >= since_dt)
    if patient_id is not None:
        q = q.where(Reply.patient_id == patient_id)
    rows = [reply_out(r) for r in db.scalars(q)]
    audit(db, actor, "replies.list", "reply", None, {"patient_id": patient_id, "count": len(rows)})
    db.commit()
    return rows


def _flag_kind(value: str, field: str) -> str:
    from .models import FlagKind

    if value not in {k.value for k in FlagKind}:
        raise ApiError(422, f"{field}: unknown flag kind {value!r}", field)
    return value


@router.get("/flags")
def list_flags(kind: Optional[str] = None, open: Optional[bool] = None, patient_id: Optional[int] = None,
               limit: int = Query(default=200, ge=1, le=1000),
               actor: str = Depends(require_token), db: Session = Depends(get_db)):
    q = select(Flag).order_by(Flag.raised_at.desc(), Flag.id.desc()).limit(limit)
    if kind:
        q = q.where(Flag.kind == _flag_kind(kind, "kind"))
    if open is True:
        q = q.where(Flag.acknowledged_at.is_(None))
    elif open is False:
        q = q.where(Flag.acknowledged_at.is_not(None))
    if patient_id is not None:
        q = q.where(Flag.patient_id == patient_id)
    return [flag_out(f) for f in db.scalars(q)]


@router.post("/flags/{flag_id}/ack")
def ack_flag(flag_id: int, body: Optional[AckIn] = None, actor: str = Depends(require_token),
             db: Session = Depends(get_db)):
    f = db.get(Flag, flag_id)
    if f is None:
        raise ApiError(404, f"id: no flag {flag_id}", "id")
    flag_ops.acknowledge(db, f, utcnow(), actor, body.note if body else None)
    audit(db, actor, "flag.ack", "flag", f.id)
    db.commit()
    return flag_out(f)


@router.get("/patients/{patient_id}/checkins")
def patient_checkins(patient_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)):
    _patient(db, patient_id, "id")
    rows = db.scalars(select(Checkin).where(Checkin.patient_id == patient_id,
                                            Checkin.expects.in_(["mood", "phq9"])).order_by(Checkin.opened_at))
    mood, phq9 = [], []
    for c in rows:
        item = {"session_id": c.session_id, "step": c.step, "status": c.status, "opened_at": _iso(c.opened_at),
                "answered_at": _iso(c.answered_at), "score": c.score}
        if c.expects == "mood":
            mood.append(item)
        else:
            item.update(band=c.band, items=(c.state or {}).get("answers", []))
            phq9.append(item)
    audit(db, actor, "checkins.view", "patient", patient_id)
    db.commit()
    return {"patient_id": patient_id, "mood": mood, "phq9": phq9}
