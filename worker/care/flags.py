"""Flags: what a clinician must see. Raised once per dedupe key; open until acknowledged."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.models import Flag, FlagKind

log = logging.getLogger("aftercare.flags")


def flag_key(kind: FlagKind | str, of: str, object_id: int) -> str:
    """Raise-once key: one `kind` flag per object, e.g. "not_home:checkin:12"."""
    return f"{kind}:{of}:{object_id}"


def raise_flag(
    db: Session,
    kind: FlagKind,
    now: datetime,
    *,
    patient_id: int | None = None,
    session_id: int | None = None,
    step: str | None = None,
    reply_id: int | None = None,
    message_id: int | None = None,
    detail: str | None = None,
    dedupe_key: str | None = None,
) -> Flag:
    """Create a flag, or return the one already raised under `dedupe_key`. Caller commits."""
    if dedupe_key:
        existing = db.scalar(select(Flag).where(Flag.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    flag = Flag(
        kind=kind,
        dedupe_key=dedupe_key,
        patient_id=patient_id,
        session_id=session_id,
        step=step,
        reply_id=reply_id,
        message_id=message_id,
        detail=detail,
        raised_at=now,
    )
    db.add(flag)
    db.flush()
    log.warning("flag %s raised: %s (patient %s)", flag.id, kind, patient_id)
    return flag


def acknowledge(db: Session, flag: Flag, now: datetime, by: str, note: str | None = None) -> Flag:
    """Idempotent: a second acknowledgement keeps the first time and author."""
    if flag.acknowledged_at is None:
        flag.acknowledged_at = now
        flag.acknowledged_by = by
        flag.note = note
    elif note and not flag.note:
        flag.note = note
    return flag
