"""The one writer of outbox rows: every `Message` is made here, under a dedupe key made here.

A row's dedupe key makes writing it idempotent: scheduling a session twice, a Twilio retry of
the same inbound text, or a task run twice never makes a second row.

Rows that must not wait for the next dispatch pass (crisis answers and alerts, the next PHQ-9
question) are *queued*: the new id is noted on the database session, and the edge that owns
the transaction (webhook, page, task) calls `hand_over(db, ...)` after its commit.
If that hand-over fails nothing is lost: the row is due now and the next pass sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import ChannelName, Expects, Message, MessageKind, MessageStatus, Recipient

_URGENT = "aftercare.urgent"

# Hands ids of committed urgent rows to the workers (Celery's `urgent` queue in production).
EnqueueUrgent = Callable[[Sequence[int]], None]


# -- dedupe keys ------------------------------------------------------------------------------
def step_key(session_id: int, step: str, recipient: Recipient, channel: ChannelName, part: int = 0) -> str:
    """A protocol step (part 0) or one of its follow-ons (PHQ-9 question n is part n)."""
    return f"s{session_id}:{step}:{recipient}:{channel}:{part}"


def auto_reply_key(reply_id: int, template: str) -> str:
    """An automatic answer to one inbound message (HELP, a clarifying question)."""
    return f"r{reply_id}:{template}"


def crisis_reply_key(crisis_key: str) -> str:
    """The 988/911 answer to the message that raised a crisis."""
    return f"{crisis_key}:reply"


def oncall_key(crisis_key: str, channel: ChannelName, n: int) -> str:
    """The alert about one crisis to the n-th on-call contact of a channel."""
    return f"{crisis_key}:oncall:{channel}:{n}"


# -- rows -------------------------------------------------------------------------------------
def exists(db: Session, key: str) -> bool:
    return db.scalar(select(Message.id).where(Message.dedupe_key == key)) is not None


def add(
    db: Session,
    *,
    key: str,
    kind: MessageKind,
    recipient: Recipient,
    channel: ChannelName,
    to: str | None,
    template: str,
    now: datetime,
    scheduled_for: datetime,
    expires_at: datetime | None = None,
    patient_id: int | None = None,
    session_id: int | None = None,
    step: str | None = None,
    part: int = 0,
    expects: Expects = Expects.none,
    context: dict[str, Any] | None = None,
    skip_reason: str | None = None,
) -> Message:
    """A new row, `scheduled` for `scheduled_for` (or `skipped` with the reason). Caller flushes, commits."""
    msg = Message(
        dedupe_key=key,
        kind=kind,
        patient_id=patient_id,
        session_id=session_id,
        step=step,
        part=part,
        recipient=recipient,
        channel=channel,
        to_address=to,
        template=template,
        expects=expects,
        context=context or {},
        scheduled_for=scheduled_for,
        next_attempt_at=scheduled_for,
        expires_at=expires_at,
        status=MessageStatus.skipped if skip_reason else MessageStatus.scheduled,
        error=skip_reason,
        created_at=now,
        updated_at=now,
    )
    db.add(msg)
    return msg


def queue(
    db: Session,
    *,
    key: str,
    kind: MessageKind,
    template: str,
    channel: ChannelName,
    to: str | None,
    now: datetime,
    recipient: Recipient = Recipient.patient,
    patient_id: int | None = None,
    session_id: int | None = None,
    step: str | None = None,
    part: int = 0,
    expects: Expects = Expects.none,
    context: dict[str, Any] | None = None,
) -> Message | None:
    """A row due now, handed to the workers right after the caller's commit. Idempotent on `key`."""
    if exists(db, key):
        return None
    msg = add(
        db,
        key=key,
        kind=kind,
        recipient=recipient,
        channel=channel,
        to=to,
        template=template,
        now=now,
        scheduled_for=now,
        patient_id=patient_id,
        session_id=session_id,
        step=step,
        part=part,
        expects=expects,
        context=context,
    )
    db.flush()
    db.info.setdefault(_URGENT, []).append(msg.id)
    return msg


def hand_over(db: Session, enqueue_urgent: EnqueueUrgent | None) -> None:
    """After `db`'s transaction committed: give the rows it queued to the workers (if anyone takes them;
    otherwise the next dispatch pass sends them -- they are due now)."""
    ids: list[int] = db.info.pop(_URGENT, [])
    if ids and enqueue_urgent is not None:
        enqueue_urgent(ids)
