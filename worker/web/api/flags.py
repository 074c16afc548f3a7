"""Flags: what a clinician must see; list and acknowledge."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from ...care import flags as flag_ops
from ...core.audit import record as audit
from ...core.db import utcnow
from ...core.models import Flag
from .common import AckIn, ApiError, flag_kind, flag_out, get_db, require_token

router = APIRouter()


@router.get("/flags")
def list_flags(
    kind: str | None = None,
    open: bool | None = None,
    patient_id: int | None = None,
    limit: int = Query(default=200, ge=1, le=1000),
    actor: str = Depends(require_token),
    db: Session = Depends(get_db),
) -> Any:
    q = select(Flag).order_by(Flag.raised_at.desc(), Flag.id.desc()).limit(limit)
    if kind:
        q = q.where(Flag.kind == flag_kind(kind, "kind"))
    if open is True:
        q = q.where(Flag.acknowledged_at.is_(None))
    elif open is False:
        q = q.where(Flag.acknowledged_at.is_not(None))
    if patient_id is not None:
        q = q.where(Flag.patient_id == patient_id)
    return [flag_out(f) for f in db.scalars(q)]


@router.post("/flags/{flag_id}/ack")
def ack_flag(
    flag_id: int, body: AckIn | None = None, actor: str = Depends(require_token), db: Session = Depends(get_db)
) -> Any:
    f = db.get(Flag, flag_id)
    if f is None:
        raise ApiError(404, f"id: no flag {flag_id}", "id")
    flag_ops.acknowledge(db, f, utcnow(), actor, body.note if body else None)
    audit(db, actor, "flag.ack", "flag", f.id)
    db.commit()
    return flag_out(f)
