"""Every inbound message is stored raw, in its own transaction, before anything else happens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..core.db import Database
from ..core.models import Reply, ReplyChannel
from ..core.phones import maybe_e164

MAX_BODY = 10_000  # SMS tops out at 1,600; anything longer is stored truncated, with a note


def store_inbound_sms(database: Database, params: dict[str, str], now: datetime) -> tuple[int, bool]:
    """Store the raw inbound message. Returns (reply id, newly stored); a Twilio retry is stored once."""
    sid = params["MessageSid"][:64]
    with database.scope() as db:
        existing = db.scalar(select(Reply.id).where(Reply.provider_id == sid))
        if existing is not None:
            return existing, False
    sender = params.get("From", "")
    body = params.get("Body", "")
    try:
        with database.scope() as db:
            reply = Reply(
                provider_id=sid,
                channel=ReplyChannel.sms,
                from_address=(maybe_e164(sender) or sender)[:320],
                to_address=params.get("To", "")[:320],
                body=body[:MAX_BODY],
                params={k: v[:2000] for k, v in params.items() if k != "Body"},
                received_at=now,
            )
            db.add(reply)
            db.flush()
            return reply.id, True
    except IntegrityError:  # the same MessageSid raced in twice: the other one stored it
        with database.scope() as db:
            raced = db.scalar(select(Reply.id).where(Reply.provider_id == sid))
            assert raced is not None
            return raced, False
