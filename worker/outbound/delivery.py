"""Delivery status callbacks: safe to repeat and to arrive out of order; never move backwards."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from ..core.context import Context
from ..core.db import is_postgres
from ..core.models import Message, MessageStatus
from .dispatch import mark_failed

log = logging.getLogger("aftercare.delivery")

# How far along each provider status is; a callback only ever moves a message forward.
RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "undelivered": 3,
    "failed": 3,
    "delivered": 4,
    "read": 5,
}


def apply_status_callback(ctx: Context, params: dict[str, str], now: datetime) -> str:
    """Apply one Twilio status callback. Returns what it did (for tests and logs)."""
    sid = params.get("MessageSid", "")
    status = params.get("MessageStatus", "").lower()
    code = params.get("ErrorCode") or None
    with ctx.db.scope() as db:
        q = select(Message).where(Message.provider_id == sid)
        if is_postgres(db):
            q = q.with_for_update()
        msg = db.scalar(q)
        if msg is None:
            log.info("status callback for an unknown message sid ignored")
            return "unknown"
        if status not in RANK:
            log.info("message %s: status %s ignored", msg.id, status)
            return "ignored"
        if RANK[status] <= RANK.get(msg.provider_status or "", -1) or msg.status == MessageStatus.delivered:
            return "stale"  # a repeat, or older news than what we have
        msg.provider_status = status
        msg.updated_at = now
        if status in ("delivered", "read"):
            msg.status = MessageStatus.delivered
            msg.delivered_at = msg.delivered_at or now
            return "delivered"
        if status in ("undelivered", "failed"):
            msg.error_code = code
            mark_failed(ctx, db, msg, now, f"{status} (Twilio error {code})" if code else status)
            return "failed"
        if status == "sent" and msg.status == MessageStatus.sending:
            msg.status = MessageStatus.sent
            msg.sent_at = msg.sent_at or now
        return status
