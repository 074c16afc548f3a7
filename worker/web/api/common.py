"""What every API module shares: errors, the database and token dependencies, input models and
the JSON shapes of each resource. Bad input is a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Header, HTTPException, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from ...core.context import Context
from ...core.db import utcnow
from ...core.models import Flag, FlagKind, InfusionSession, Message, Patient, Reply, SmsOptOut
from ...core.phones import to_e164
from ..auth import check_token
from ..state import get_ctx

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status_code=status, detail={"error": message, "field": field})


def get_db(ctx: Context = Depends(get_ctx)) -> Iterator[Session]:
    db = ctx.db.session()
    try:
        yield db
    finally:
        db.close()


def require_token(
    request: Request, authorization: str | None = Header(default=None), db: Session = Depends(get_db)
) -> str:
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


def _phone(v: str | None) -> str | None:
    if v in (None, ""):
        return None
    return to_e164(v)


def _aware(v: datetime | None) -> datetime | None:
    if v is not None and (v.tzinfo is None or v.utcoffset() is None):
        raise ValueError("needs a UTC offset, e.g. 2026-11-24T09:00:00-05:00")
    return v.astimezone(UTC) if v is not None else None


Phone = Annotated[str | None, AfterValidator(_phone)]
AwareDatetime = Annotated[datetime | None, AfterValidator(_aware)]


class PatientIn(_In):
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(default="", max_length=100)
    phone: Phone = None
    email: str | None = Field(default=None, max_length=320)
    timezone: str | None = None
    language: Literal["en", "es"] = "en"
    preferred_channel: Literal["sms", "email"] = "sms"
    sms_consent: bool = False
    email_consent: bool = False
    phq9_by_sms: bool = False
    external_id: str | None = Field(default=None, max_length=100)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not EMAIL.match(v):
            raise ValueError("not an email address")
        return v.lower()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v


class SessionIn(_In):
    patient_id: int
    scheduled_start: Annotated[datetime, AfterValidator(_aware)]
    driver_name: str | None = Field(default=None, max_length=200)
    driver_phone: Phone = None
    external_id: str | None = Field(default=None, max_length=100)


class CompleteIn(_In):
    ended_at: AwareDatetime = None


class SessionPatch(_In):
    scheduled_start: AwareDatetime = None
    driver_name: str | None = Field(default=None, max_length=200)
    driver_phone: Phone = None


class AckIn(_In):
    note: str | None = Field(default=None, max_length=4000)


# -- output -----------------------------------------------------------------------------------
def iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def patient_out(db: Session, p: Patient) -> dict[str, Any]:
    return {
        "id": p.id,
        "first_name": p.first_name,
        "last_name": p.last_name,
        "phone": p.phone,
        "email": p.email,
        "timezone": p.timezone,
        "language": p.language,
        "preferred_channel": p.preferred_channel,
        "sms_consent": p.sms_consent,
        "email_consent": p.email_consent,
        "phq9_by_sms": p.phq9_by_sms,
        "external_id": p.external_id,
        "sms_opted_out": bool(p.phone and db.get(SmsOptOut, p.phone)),
    }


def session_out(s: InfusionSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "status": s.status,
        "patient_id": s.patient_id,
        "scheduled_start": iso(s.scheduled_start),
        "ended_at": iso(s.ended_at),
        "driver_name": s.driver_name,
        "driver_phone": s.driver_phone,
        "external_id": s.external_id,
    }


def message_out(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "step": m.step,
        "recipient": m.recipient,
        "channel": m.channel,
        "status": m.status,
        "scheduled_for": iso(m.scheduled_for),
        "sent_at": iso(m.sent_at),
        "provider_id": m.provider_id,
        "error": m.error,
        "kind": m.kind,
        "part": m.part,
        "attempts": m.attempts,
        "delivered_at": iso(m.delivered_at),
    }


def flag_out(f: Flag) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": f.kind,
        "patient_id": f.patient_id,
        "session_id": f.session_id,
        "step": f.step,
        "reply_id": f.reply_id,
        "raised_at": iso(f.raised_at),
        "acknowledged_at": iso(f.acknowledged_at),
        "acknowledged_by": f.acknowledged_by,
        "note": f.note,
        "detail": f.detail,
        "message_id": f.message_id,
    }


def reply_out(r: Reply) -> dict[str, Any]:
    acks = [f.acknowledged_at for f in r.flags if f.acknowledged_at is not None]
    return {
        "id": r.id,
        "patient_id": r.patient_id,
        "session_id": r.session_id,
        "step": r.step,
        "channel": r.channel,
        "body": r.body,
        "received_at": iso(r.received_at),
        "score": r.score,
        "outcome": r.outcome,
        "flags": [f.kind for f in r.flags],
        "acknowledged_at": iso(max(acks)) if r.flags and len(acks) == len(r.flags) else None,
    }


def find_patient(db: Session, patient_id: int, field: str = "patient_id", status: int = 404) -> Patient:
    p = db.get(Patient, patient_id)
    if p is None:
        raise ApiError(status, f"{field}: no patient {patient_id}", field)
    return p


def parse_since(value: str | None, field: str = "since") -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, f"{field}: not an ISO 8601 date-time", field) from None
    if dt.tzinfo is None:
        raise ApiError(422, f"{field}: needs a UTC offset", field)
    return dt


def flag_kind(value: str, field: str) -> str:
    if value not in {k.value for k in FlagKind}:
        raise ApiError(422, f"{field}: unknown flag kind {value!r}", field)
    return value


Registered = TypeVar("Registered", Patient, InfusionSession)


def by_external_id(db: Session, model: type[Registered], external_id: str | None) -> Registered | None:
    """The patient or session the EHR registered under `external_id` (POSTs are idempotent by it)."""
    if not external_id:
        return None
    return db.scalar(select(model).where(model.external_id == external_id))
