"""Replies: every inbound message, newest first, with its score and flags."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from ...core.audit import record as audit
from ...core.models import Flag, Reply
from .common import flag_kind, get_db, parse_since, reply_out, require_token

router = APIRouter()


@router.get("/replies")
def list_replies(
    flag: str | None = None,
    since: str | None = None,
    patient_id: int | None = None,
    limit: int = Query(default=200, ge=1, le=1000),
    actor: str = Depends(require_token),
    db: Session = Depends(get_db),
) -> Any:
    q = select(Reply).order_by(Reply.received_at.desc(), Reply.id.desc()).limit(limit)
    if flag:
        flag_kind(flag, "flag")
        q = q.where(Reply.id.in_(select(Flag.reply_id).where(Flag.kind == flag)))
    if since_dt := parse_since(since):
        q = q.where(Reply.received_at >= since_dt)
    if patient_id is not None:
        q = q.where(Reply.patient_id == patient_id)
    rows = [reply_out(r) for r in db.scalars(q)]
    audit(db, actor, "replies.list", "reply", None, {"patient_id": patient_id, "count": len(rows)})
    db.commit()
    return rows
