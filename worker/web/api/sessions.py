"""Sessions: register, complete, cancel, reschedule (each idempotent; pending messages follow)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...care.scheduling import sync_session
from ...core.audit import record as audit
from ...core.context import Context
from ...core.db import utcnow
from ...core.models import InfusionSession, Message, SessionStatus
from .common import (
    ApiError,
    CompleteIn,
    SessionIn,
    SessionPatch,
    by_external_id,
    find_patient,
    get_ctx,
    get_db,
    message_out,
    require_token,
    session_out,
)

router = APIRouter()


def find_session(db: Session, session_id: int) -> InfusionSession:
    s = db.get(InfusionSession, session_id)
    if s is None:
        raise ApiError(404, f"id: no session {session_id}", "id")
    return s


@router.post("/sessions", status_code=201)
def create_session(
    body: SessionIn, actor: str = Depends(require_token), db: Session = Depends(get_db), ctx: Context = Depends(get_ctx)
) -> Any:
    existing = by_external_id(db, InfusionSession, body.external_id)
    if existing is not None:
        return JSONResponse(session_out(existing), status_code=200)
    find_patient(db, body.patient_id, status=422)
    now = utcnow()
    s = InfusionSession(**body.model_dump(), status=SessionStatus.scheduled, created_at=now, updated_at=now)
    db.add(s)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        existing = by_external_id(db, InfusionSession, body.external_id)
        if existing is None:
            raise
        return JSONResponse(session_out(existing), status_code=200)
    sync_session(db, s, now, ctx.protocol)
    audit(db, actor, "session.create", "session", s.id)
    db.commit()
    return session_out(s)


@router.get("/sessions/{session_id}")
def get_session(session_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)) -> Any:
    return session_out(find_session(db, session_id))


@router.post("/sessions/{session_id}/complete")
def complete_session(
    session_id: int,
    body: CompleteIn | None = None,
    actor: str = Depends(require_token),
    db: Session = Depends(get_db),
    ctx: Context = Depends(get_ctx),
) -> Any:
    s = find_session(db, session_id)
    if s.status == SessionStatus.cancelled:
        raise ApiError(409, "status: the session is cancelled", "status")
    now = utcnow()
    ended = body.ended_at if body else None
    if ended is not None and ended > now:
        raise ApiError(422, "ended_at: is in the future", "ended_at")
    if s.status != SessionStatus.completed or (ended is not None and ended != s.ended_at):
        s.status = SessionStatus.completed
        s.ended_at = ended or s.ended_at or now
        s.updated_at = now
        audit(db, actor, "session.complete", "session", s.id)
    sync_session(db, s, now, ctx.protocol)
    db.commit()
    return session_out(s)


@router.post("/sessions/{session_id}/cancel")
def cancel_session(
    session_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db), ctx: Context = Depends(get_ctx)
) -> Any:
    s = find_session(db, session_id)
    now = utcnow()
    if s.status != SessionStatus.cancelled:
        s.status = SessionStatus.cancelled
        s.updated_at = now
        audit(db, actor, "session.cancel", "session", s.id)
    sync_session(db, s, now, ctx.protocol)
    db.commit()
    return session_out(s)


@router.patch("/sessions/{session_id}")
def patch_session(
    session_id: int,
    body: SessionPatch,
    actor: str = Depends(require_token),
    db: Session = Depends(get_db),
    ctx: Context = Depends(get_ctx),
) -> Any:
    s = find_session(db, session_id)
    if s.status == SessionStatus.cancelled:
        raise ApiError(409, "status: the session is cancelled", "status")
    changes = body.model_dump(exclude_unset=True)
    if "scheduled_start" in changes and changes["scheduled_start"] is None:
        raise ApiError(422, "scheduled_start: cannot be null", "scheduled_start")
    if "scheduled_start" in changes and s.status == SessionStatus.completed:
        raise ApiError(409, "scheduled_start: the session is already completed", "scheduled_start")
    now = utcnow()
    for k, v in changes.items():
        setattr(s, k, v)
    s.updated_at = now
    sync_session(db, s, now, ctx.protocol)
    audit(db, actor, "session.update", "session", s.id, {"fields": sorted(changes)})
    db.commit()
    return session_out(s)


@router.get("/sessions/{session_id}/messages")
def session_messages(session_id: int, actor: str = Depends(require_token), db: Session = Depends(get_db)) -> Any:
    find_session(db, session_id)
    rows = db.scalars(
        select(Message).where(Message.session_id == session_id).order_by(Message.scheduled_for, Message.id)
    )
    return [message_out(m) for m in rows]
