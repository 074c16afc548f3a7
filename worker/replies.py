"""Inbound replies (SPEC §4). Stored first; processed after. (Filled in by the check-in work.)"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db import session_scope
from .models import Reply
from .phones import maybe_e164


def store_inbound_sms(params: dict[str, str], now: datetime) -> tuple[int, bool]:
    """Store the raw inbound message in its own transaction. (reply id, newly stored?)"""
    sid = params["MessageSid"]
    with session_scope() as db:
        existing = db.scalar(select(Reply.id).where(Reply.provider_id == sid))
        if existing is not None:
            return existing, False
    try:
        with session_scope() as db:
            reply = Reply(provider_id=sid, channel="sms", from_address=maybe_e164(params.get("From")) or params.get("From"),
                          to_address=params.get("To"), body=params.get("Body", ""), params=params, received_at=now)
            db.add(reply)
            db.flush()
            return reply.id, True
    except IntegrityError:  # the same MessageSid raced in twice
        with session_scope() as db:
            return db.scalar(select(Reply.id).where(Reply.provider_id == sid)), False


def stored_auto_reply(reply_id: int) -> Optional[str]:
    return None


def process(reply_id: int, now: datetime) -> Optional[str]:
    return None
