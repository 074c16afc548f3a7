"""Audit events: who saw or changed what, when. Ids only, never PHI."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .db import utcnow
from .models import AuditEvent


def record(
    db: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: object | None,
    detail: dict[str, Any] | None = None,
) -> None:
    db.add(
        AuditEvent(
            at=utcnow(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            detail=detail or {},
        )
    )
