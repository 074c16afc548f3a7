"""Patients: register (idempotent by external_id), read, and the mood / PHQ-9 series."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...core.audit import record as audit
from ...core.context import Context
from ...core.db import utcnow
from ...core.models import Checkin, Expects, Patient
from .common import ApiError, PatientIn, by_external_id, find_patient, get_ctx, get_db, iso, patient_out, require_token

router = APIRouter()


@router.post("/patients", status_code=201)
def create_patient(
    body: PatientIn, actor: str = Depends(require_token), db: Session = Depends(get_db), ctx: Context = Depends(get_ctx)
) -> Any:
    existing = by_external_id(db, Patient, body.external_id)
    if existing is not None:
        return JSONResponse(patient_out(db, existing), status_code=200)
    if body.preferred_channel == "sms" and not body.phone:
        raise ApiError(422, "phone: required when preferred_channel is sms", "phone")
    if body.preferred_channel == "email" and not body.email:
        raise ApiError(422, "email: required when preferred_channel is email", "email")
    data = body.model_dump()
    data["timezone"] = data["timezone"] or ctx.settings.clinic_timezone
    patient = Patient(**data, created_at=utcnow())
    db.add(patient)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        existing = by_external_id(db, Patient, body.external_id)
        if existing is None:
            raise
        return JSONResponse(patient_out(db, existing), status_code=200)
    audit(db, actor, "patient.create", "patient", patient.id)
    db.commit()
    return patient_out(db, patient)


@router.get("/patients/{patient_id}")
def get_patient(patient_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)) -> Any:
    p = find_patient(db, patient_id, "id")
    audit(db, actor, "patient.view", "patient", p.id)
    db.commit()
    return patient_out(db, p)


@router.get("/patients/{patient_id}/checkins")
def patient_checkins(patient_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)) -> Any:
    find_patient(db, patient_id, "id")
    rows = db.scalars(
        select(Checkin)
        .where(Checkin.patient_id == patient_id, Checkin.expects.in_([Expects.mood, Expects.phq9]))
        .order_by(Checkin.opened_at)
    )
    mood, phq9 = [], []
    for c in rows:
        item = {
            "session_id": c.session_id,
            "step": c.step,
            "status": c.status,
            "opened_at": iso(c.opened_at),
            "answered_at": iso(c.answered_at),
            "score": c.score,
        }
        if c.expects == Expects.mood:
            mood.append(item)
        else:
            item.update(band=c.band, items=(c.state or {}).get("answers", []))
            phq9.append(item)
    audit(db, actor, "checkins.view", "patient", patient_id)
    db.commit()
    return {"patient_id": patient_id, "mood": mood, "phq9": phq9}
