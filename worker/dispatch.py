"""The dispatcher: moves due outbox rows to their channel, each at most once.

How a row travels (every step a committed database change):

1. ``tick`` (every DISPATCH_INTERVAL, from beat) selects due rows -- ``status='scheduled' AND
   next_attempt_at <= now`` via the ``ix_messages_due`` index, ``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL -- pushes their ``next_attempt_at`` forward by a lease so the next tick does not
   enqueue them again, and enqueues ``send_message(id, attempts)`` (no ETA, no countdown).
2. ``send_message`` claims the row with a conditional UPDATE (``status='scheduled' AND
   attempts=<seen>``) and acts only if exactly one row changed: two workers, two beats or a
   redelivered task cannot both claim it. The claim records the attempt *before* the provider
   is called.
3. Eligibility is checked again (session cancelled? opted out? consent? already answered?
   expired?), the template is rendered and stored on the row, then the channel sends it.
4. The outcome lands: ``sent`` (provider id), ``scheduled`` again with backoff (transient),
   ``failed`` + a ``delivery_failed`` flag (permanent), or ``skipped`` (provider opt-out).

A row left in ``sending`` by a dead worker (older than SENDING_TIMEOUT) is asked about with
``channel.reconcile``: the provider has it -> ``sent``; the provider surely does not -> back to
``scheduled``; cannot tell (SMTP) -> ``failed`` with the reason and a flag for a clinician,
because a duplicate clinical message is worse than one a human re-sends. Nothing is lost
(the row and its reason stay visible) and nothing is handed to a provider twice.
If a queued task is lost (Redis restart), its row is still ``scheduled``: once the lease
passes, the next tick enqueues it again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from . import checkins, flags, replies
from .channels import Channel, OutboundMessage, Outcome, Reconciled, SendResult, get_channels
from .config import Settings, get_settings
from .db import is_postgres, session_scope, utcnow
from .models import (
    Checkin,
    CheckinStatus,
    FlagKind,
    InfusionSession,
    Message,
    MessageKind,
    MessageStatus,
    SessionStatus,
    SmsOptOut,
)
from .phones import mask_address
from .rendering import render_message
from .scheduling import is_opted_out, recipient_address

log = logging.getLogger("aftercare.dispatch")

LEASE = timedelta(seconds=120)  # a row enqueued by a tick is not enqueued again for this long
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30.0  # seconds; doubles per attempt
BACKOFF_CAP = 3600.0
TICK_BATCH = 500

Enqueue = Callable[[int, int], None]


def backoff(attempts: int, retry_after: Optional[float] = None) -> timedelta:
    """Exponential with jitter; never sooner than the provider's Retry-After."""
    base = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    delay = base * (0.8 + 0.4 * random.random())
    return timedelta(seconds=max(delay, retry_after or 0))


@dataclass
class TickResult:
    enqueued: int = 0
    recovered: int = 0
    timers: int = 0


def claim_due(db: Session, now: datetime, limit: int = TICK_BATCH) -> list[tuple[int, int]]:
    """Due (id, attempts) pairs, leased to this tick. Caller commits."""
    q = (
        select(Message.id, Message.attempts)
        .where(Message.status == MessageStatus.scheduled.value, Message.next_attempt_at <= now)
        .order_by(Message.next_attempt_at)
        .limit(limit)
    )
    if is_postgres(db):
        q = q.with_for_update(skip_locked=True)
    rows = [(r.id, r.attempts) for r in db.execute(q)]
    if rows:
        db.execute(
            update(Message)
            .where(Message.id.in_([r[0] for r in rows]), Message.status == MessageStatus.scheduled.value)
            .values(next_attempt_at=now + LEASE)
            .execution_options(synchronize_session=False)
        )
    return rows


def tick(now: datetime, enqueue: Enqueue, settings: Optional[Settings] = None,
         limit: int = TICK_BATCH) -> TickResult:
    """One dispatcher pass: recover dead sends, fire escalation timers, enqueue due rows."""
    settings = settings or get_settings()
    result = TickResult()
    result.recovered = recover_stale(now, settings)
    with session_scope() as db:
        result.timers = checkins.run_timers(db, now)
    replies.process_pending(now)
    with session_scope() as db:
        due = claim_due(db, now, limit)
    for message_id, attempts in due:
        enqueue(message_id, attempts)
    result.enqueued = len(due)
    return result


def _outbound(msg: Message) -> OutboundMessage:
    return OutboundMessage(
        id=msg.id,
        channel=msg.channel,
        to=msg.to_address or "",
        body=msg.body or "",
        subject=msg.subject,
        html=msg.html,
        attempts=msg.attempts,
        last_error_code=msg.error_code,
        created_at=msg.created_at,
        scheduled_for=msg.scheduled_for,
    )


def _finish(db: Session, msg: Message, status: MessageStatus, now: datetime, error: Optional[str] = None) -> None:
    msg.status = status.value
    msg.error = error
    msg.updated_at = now


def _ineligible(db: Session, msg: Message, now: datetime) -> Optional[tuple[MessageStatus, str]]:
    """Why this claimed row must not be sent now, if it must not."""
    session = msg.session
    if session is not None and session.status == SessionStatus.cancelled.value:
        return MessageStatus.cancelled, "session cancelled"
    if msg.expires_at is not None and now > msg.expires_at:
        return MessageStatus.expired, f"due {msg.scheduled_for:%Y-%m-%d %H:%M} UTC, too late to be useful"
    if msg.kind in (MessageKind.reply.value, MessageKind.alert.value):
        # An answer to someone who just wrote, or an on-call alert: the stored address, opt-out
        # honoured -- except a crisis answer with 988, which goes whatever the number opted out of.
        address, reason = msg.to_address, None
        if not address:
            reason = "no address"
        elif msg.channel == "sms" and not (msg.context or {}).get("urgent") and is_opted_out(db, address):
            reason = "opted out of SMS"
    else:
        address, reason = recipient_address(db, session, msg.patient, msg.recipient, msg.channel, msg.to_address)
    if reason:
        return MessageStatus.skipped, reason
    msg.to_address = address
    if msg.kind == MessageKind.step.value and msg.session_id is not None and _expects_reply(msg.step):
        answered = db.scalar(
            select(Checkin.id).where(
                Checkin.session_id == msg.session_id,
                Checkin.step == msg.step,
                Checkin.status == CheckinStatus.answered.value,
            )
        )
        if answered:
            return MessageStatus.skipped, "already answered"
    return None


def _expects_reply(step_name: Optional[str]) -> bool:
    from .protocol import get_protocol

    step = get_protocol().step(step_name or "")
    return step is not None and step.expects != "none"


def _claim(db: Session, message_id: int, attempts: int, now: datetime) -> bool:
    res = db.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status == MessageStatus.scheduled.value,
            Message.attempts == attempts,
        )
        .values(status=MessageStatus.sending.value, attempts=attempts + 1, claimed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def send_message(message_id: int, attempts: int, now: datetime,
                 channels: Optional[dict[str, Channel]] = None,
                 settings: Optional[Settings] = None) -> str:
    """Claim, check, render and send one row. Returns what happened (for logs and tests)."""
    settings = settings or get_settings()
    channels = channels or get_channels(settings)
    with session_scope() as db:
        channel_name = db.scalar(select(Message.channel).where(
            Message.id == message_id, Message.status == MessageStatus.scheduled.value, Message.attempts == attempts))
    if channel_name is None:
        return "not-claimable"
    channel = channels[channel_name]
    channel.wait_turn()  # the global rate limit, before the claim: a claimed row is never held waiting

    # One transaction: claim, re-check, render, store. It commits before the provider is called.
    with session_scope() as db:
        if not _claim(db, message_id, attempts, now):
            return "lost-claim"
        msg = db.get(Message, message_id, options=[joinedload(Message.session), joinedload(Message.patient)])
        verdict = _ineligible(db, msg, now)
        if verdict is not None:
            _finish(db, msg, verdict[0], now, verdict[1])
            log.info("message %s %s: %s", msg.id, verdict[0].value, verdict[1])
            return verdict[0].value
        try:
            rendered = render_message(db, msg, settings)
        except Exception as exc:  # a template error is permanent: a clinician must see it
            _finish(db, msg, MessageStatus.failed, now, f"template error: {type(exc).__name__}: {exc}")
            flags.raise_flag(db, FlagKind.delivery_failed, now, patient_id=msg.patient_id,
                             session_id=msg.session_id, step=msg.step, message_id=msg.id,
                             dedupe_key=f"delivery_failed:message:{msg.id}", detail="template error")
            log.error("message %s: template %s failed to render", msg.id, msg.template)
            return "failed"
        msg.subject, msg.body, msg.html = rendered.subject, rendered.body, rendered.html
        outbound = _outbound(msg)
    # The attempt (status sending, attempts+1, body) is committed before the provider is called.
    try:
        result = channel.send(outbound)
    except Exception as exc:  # a channel bug must not leave the row stuck in `sending`
        log.exception("channel %s raised on message %s", channel.name, message_id)
        result = SendResult.retry(f"{type(exc).__name__}: {exc}", code="exception")
    with session_scope() as db:
        msg = db.get(Message, message_id)
        return record_result(db, msg, result, max(utcnow(), now))  # the send may have waited


def record_result(db: Session, msg: Message, result: SendResult, now: datetime) -> str:
    """Apply a channel's verdict to the row. Caller commits."""
    msg.error_code = result.error_code
    if result.outcome == Outcome.sent:
        msg.status = MessageStatus.sent.value
        msg.provider_id = result.provider_id
        msg.sent_at = now
        msg.error = None
        msg.updated_at = now
        log.info("message %s sent via %s to %s", msg.id, msg.channel, mask_address(msg.to_address))
        checkins.on_sent(db, msg, now)
        return "sent"
    if result.outcome == Outcome.opted_out:
        if msg.to_address and db.get(SmsOptOut, msg.to_address) is None:
            db.add(SmsOptOut(phone=msg.to_address, opted_out_at=now, source="provider"))
        _finish(db, msg, MessageStatus.skipped, now, result.error or "recipient unsubscribed")
        log.info("message %s skipped: provider reports opt-out", msg.id)
        return "skipped"
    if result.outcome == Outcome.retry and msg.attempts < MAX_ATTEMPTS:
        msg.status = MessageStatus.scheduled.value
        msg.error = result.error
        msg.next_attempt_at = now + backoff(msg.attempts, result.retry_after)
        msg.updated_at = now
        log.warning("message %s attempt %s: transient error %s", msg.id, msg.attempts, result.error_code or "")
        return "retry"
    error = result.error or "failed"
    if result.outcome == Outcome.retry:
        error = f"gave up after {msg.attempts} attempts: {error}"
    mark_failed(db, msg, now, error)
    return "failed"


def mark_failed(db: Session, msg: Message, now: datetime, error: str) -> None:
    """Permanent failure: the reason on the row, a flag for a clinician, email fallback if any."""
    _finish(db, msg, MessageStatus.failed, now, error)
    flags.raise_flag(db, FlagKind.delivery_failed, now, patient_id=msg.patient_id, session_id=msg.session_id,
                     step=msg.step, message_id=msg.id, dedupe_key=f"delivery_failed:message:{msg.id}",
                     detail=f"{msg.channel} to {msg.recipient}: {error}")
    log.warning("message %s failed for good (%s)", msg.id, msg.error_code or "no code")
    fallback_to_email(db, msg, now)


def fallback_to_email(db: Session, msg: Message, now: datetime) -> Optional[Message]:
    """A `channel: preferred` step whose SMS failed for good goes by email, if the patient consented."""
    from .protocol import get_protocol

    if msg.channel != "sms" or msg.kind != MessageKind.step.value or msg.recipient != "patient" or not msg.session_id:
        return None
    step = get_protocol().step(msg.step or "")
    if step is None or step.channel != "preferred":
        return None
    session = db.get(InfusionSession, msg.session_id)
    if session is None or session.status == SessionStatus.cancelled.value:
        return None
    address, reason = recipient_address(db, session, session.patient, "patient", "email")
    if reason:
        return None
    key = msg.dedupe_key.replace(":sms:", ":email:")
    if db.scalar(select(Message.id).where(Message.dedupe_key == key)):
        return None
    email = Message(
        dedupe_key=key, kind=msg.kind, session_id=msg.session_id, patient_id=msg.patient_id, step=msg.step,
        part=msg.part, recipient="patient", channel="email", to_address=address, template=msg.template,
        context=dict(msg.context or {}),
        scheduled_for=now, next_attempt_at=now, expires_at=msg.expires_at,
        status=MessageStatus.scheduled.value, created_at=now, updated_at=now,
    )
    db.add(email)
    db.flush()
    log.info("message %s: falling back to email as message %s", msg.id, email.id)
    return email


def recover_stale(now: datetime, settings: Optional[Settings] = None,
                  channels: Optional[dict[str, Channel]] = None) -> int:
    """Rows left in `sending` by a dead worker: reconcile with the provider (see module doc)."""
    settings = settings or get_settings()
    cutoff = now - timedelta(seconds=settings.sending_timeout)
    with session_scope() as db:
        stale = list(db.scalars(
            select(Message).where(Message.status == MessageStatus.sending.value, Message.claimed_at < cutoff).limit(100)
        ))
    if not stale:
        return 0
    channels = channels or get_channels(settings)
    done = 0
    for row in stale:
        state, provider_id = channels[row.channel].reconcile(_outbound(row))
        with session_scope() as db:
            # Act only if nobody else moved it since we looked.
            res = db.execute(
                update(Message)
                .where(Message.id == row.id, Message.status == MessageStatus.sending.value,
                       Message.claimed_at == row.claimed_at)
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:
                continue
            msg = db.get(Message, row.id)
            if state == Reconciled.found:
                record_result(db, msg, SendResult.sent(provider_id or ""), now)
            elif state == Reconciled.not_found:
                msg.status = MessageStatus.scheduled.value
                msg.next_attempt_at = now
                msg.error = "worker died before the provider got it; resending"
            else:
                mark_failed(db, msg, now, "worker died mid-send and the provider cannot say whether it was "
                                          "sent; not resent to avoid a duplicate")
            done += 1
            log.warning("message %s was stuck in sending: %s", row.id, state.value)
    return done


def dispatch_inline(now: datetime, channels: Optional[dict[str, Channel]] = None,
                    limit: int = TICK_BATCH) -> TickResult:
    """A tick that sends in this process instead of enqueuing (benchmarks, `--once`, tests)."""
    return tick(now, lambda mid, att: send_message(mid, att, now, channels=channels), limit=limit)
