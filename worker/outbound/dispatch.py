"""The dispatcher: moves due outbox rows to their channel, each at most once.

How a row travels (every step a committed database change):

1. ``dispatch_due`` (every DISPATCH_INTERVAL, from beat) selects due rows -- ``status='scheduled' AND
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
``channel.reconcile`` (``recovery.py``): the provider has it -> ``sent``; the provider surely does not -> back to
``scheduled``; cannot tell (SMTP) -> ``failed`` with the reason and a flag for a clinician,
because a duplicate clinical message is worse than one a human re-sends. Nothing is lost
(the row and its reason stay visible) and nothing is handed to a provider twice.
If a queued task is lost (Redis restart), its row is still ``scheduled``: once the lease
passes, the next tick enqueues it again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from ..care import checkins, consent, flags
from ..channels import OutboundMessage, Outcome, SendResult
from ..core import outbox
from ..core.context import Context
from ..core.db import is_postgres, utcnow
from ..core.models import (
    ChannelName,
    Checkin,
    CheckinStatus,
    Expects,
    FlagKind,
    InfusionSession,
    Message,
    MessageKind,
    MessageStatus,
    Recipient,
    SessionStatus,
)
from ..core.phones import mask_address
from .rendering import render_message
from .runtime import Outbound

log = logging.getLogger("aftercare.dispatch")

LEASE = timedelta(seconds=120)  # a row enqueued by a pass is not enqueued again for this long
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30.0  # seconds; doubles per attempt
BACKOFF_CAP = 3600.0
TICK_BATCH = 500

Enqueue = Callable[[int, int], None]  # (message id, attempts seen): hand one row to a worker


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Exponential with jitter; never sooner than the provider's Retry-After."""
    base = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    delay = base * (0.8 + 0.4 * random.random())
    return timedelta(seconds=max(delay, retry_after or 0))


def claim_due(db: Session, now: datetime, limit: int = TICK_BATCH) -> list[tuple[int, int]]:
    """Due (id, attempts) pairs, leased to this pass. Caller commits."""
    q = (
        select(Message.id, Message.attempts)
        .where(Message.status == MessageStatus.scheduled, Message.next_attempt_at <= now)
        .order_by(Message.next_attempt_at)
        .limit(limit)
    )
    if is_postgres(db):
        q = q.with_for_update(skip_locked=True)
    rows = [(r.id, r.attempts) for r in db.execute(q)]
    if rows:
        db.execute(
            update(Message)
            .where(Message.id.in_([r[0] for r in rows]), Message.status == MessageStatus.scheduled)
            .values(next_attempt_at=now + LEASE)
            .execution_options(synchronize_session=False)
        )
    return rows


def dispatch_due(out: Outbound, now: datetime, enqueue: Enqueue, limit: int = TICK_BATCH) -> int:
    """Lease the due rows and hand each to a worker. Returns how many."""
    with out.ctx.db.scope() as db:
        due = claim_due(db, now, limit)
    for message_id, attempts in due:
        enqueue(message_id, attempts)
    return len(due)


def outbound_message(msg: Message) -> OutboundMessage:
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


def _finish(msg: Message, status: MessageStatus, now: datetime, error: str | None = None) -> None:
    msg.status = status
    msg.error = error
    msg.updated_at = now


def _ineligible(db: Session, msg: Message, now: datetime) -> tuple[MessageStatus, str] | None:
    """Why this claimed row must not be sent now, if it must not."""
    session = msg.session
    if session is not None and session.status == SessionStatus.cancelled:
        return MessageStatus.cancelled, "session cancelled"
    if msg.expires_at is not None and now > msg.expires_at:
        return MessageStatus.expired, f"due {msg.scheduled_for:%Y-%m-%d %H:%M} UTC, too late to be useful"
    if msg.kind in (MessageKind.reply, MessageKind.alert):
        # An answer to someone who just wrote, or an on-call alert: the stored address, opt-out
        # honoured -- except a crisis answer with 988, which goes whatever the number opted out of.
        address, reason = msg.to_address, None
        if not address:
            reason = "no address"
        elif (
            msg.channel == ChannelName.sms
            and not (msg.context or {}).get("urgent")
            and consent.is_opted_out(db, address)
        ):
            reason = consent.OPTED_OUT
    else:
        address, reason = consent.recipient_address(
            db, session, msg.patient, msg.recipient, msg.channel, msg.to_address
        )
    if reason:
        return MessageStatus.skipped, reason
    msg.to_address = address
    if msg.kind == MessageKind.step and msg.session_id is not None and msg.expects != Expects.none:
        answered = db.scalar(
            select(Checkin.id).where(
                Checkin.session_id == msg.session_id,
                Checkin.step == msg.step,
                Checkin.status == CheckinStatus.answered,
            )
        )
        if answered:
            return MessageStatus.skipped, "already answered"
    return None


def _claim(db: Session, message_id: int, attempts: int, now: datetime) -> bool:
    res = db.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status == MessageStatus.scheduled,
            Message.attempts == attempts,
        )
        .values(status=MessageStatus.sending, attempts=attempts + 1, claimed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def send_message(
    out: Outbound, message_id: int, attempts: int, now: datetime, enqueue_urgent: outbox.EnqueueUrgent | None = None
) -> str:
    """Claim, check, render and send one row. Returns what happened (for logs and tests).

    Rows the result queues (the first PHQ-9 question after its intro) go to `enqueue_urgent`
    after the result's commit; without it the next pass sends them.
    """
    database = out.ctx.db
    with database.scope() as db:
        channel_name = db.scalar(
            select(Message.channel).where(
                Message.id == message_id, Message.status == MessageStatus.scheduled, Message.attempts == attempts
            )
        )
    if channel_name is None:
        return "not-claimable"
    channel = out.channels[channel_name]
    channel.wait_turn()  # the global rate limit, before the claim: a claimed row is never held waiting

    # One transaction: claim, re-check, render, store. It commits before the provider is called.
    with database.scope() as db:
        if not _claim(db, message_id, attempts, now):
            return "lost-claim"
        msg = db.get(Message, message_id, options=[joinedload(Message.session), joinedload(Message.patient)])
        assert msg is not None
        verdict = _ineligible(db, msg, now)
        if verdict is not None:
            _finish(msg, verdict[0], now, verdict[1])
            log.info("message %s %s: %s", msg.id, verdict[0], verdict[1])
            return verdict[0].value
        try:
            rendered = render_message(out.templates, out.ctx.settings, msg)
        except Exception as exc:  # noqa: BLE001 - a template error is permanent: a clinician must see it
            _finish(msg, MessageStatus.failed, now, f"template error: {type(exc).__name__}: {exc}")
            _flag_failed(db, msg, now, "template error")
            log.error("message %s: template %s failed to render", msg.id, msg.template)
            return "failed"
        msg.subject, msg.body, msg.html = rendered.subject, rendered.body, rendered.html
        outgoing = outbound_message(msg)
    # The attempt (status sending, attempts+1, body) is committed before the provider is called.
    try:
        result = channel.send(outgoing)
    except Exception as exc:  # a channel bug must not leave the row stuck in `sending`
        log.exception("channel %s raised on message %s", channel.name, message_id)
        result = SendResult.retry(f"{type(exc).__name__}: {exc}", code="exception")
    with database.scope() as db:
        msg = db.get(Message, message_id)
        assert msg is not None
        outcome = record_result(out.ctx, db, msg, result, max(utcnow(), now))  # the send may have waited
    outbox.hand_over(db, enqueue_urgent)
    return outcome


def record_result(ctx: Context, db: Session, msg: Message, result: SendResult, now: datetime) -> str:
    """Apply a channel's verdict to the row. Caller commits."""
    msg.error_code = result.error_code
    if result.outcome == Outcome.sent:
        msg.status = MessageStatus.sent
        msg.provider_id = result.provider_id
        msg.sent_at = now
        msg.error = None
        msg.updated_at = now
        log.info("message %s sent via %s to %s", msg.id, msg.channel, mask_address(msg.to_address))
        checkins.on_sent(ctx, db, msg, now)
        return "sent"
    if result.outcome == Outcome.opted_out:
        consent.remember_opt_out(db, msg.to_address, now, "provider")
        _finish(msg, MessageStatus.skipped, now, result.error or "recipient unsubscribed")
        log.info("message %s skipped: provider reports opt-out", msg.id)
        return "skipped"
    if result.outcome == Outcome.retry and msg.attempts < MAX_ATTEMPTS:
        msg.status = MessageStatus.scheduled
        msg.error = result.error
        msg.next_attempt_at = now + backoff(msg.attempts, result.retry_after)
        msg.updated_at = now
        log.warning("message %s attempt %s: transient error %s", msg.id, msg.attempts, result.error_code or "")
        return "retry"
    error = result.error or "failed"
    if result.outcome == Outcome.retry:
        error = f"gave up after {msg.attempts} attempts: {error}"
    mark_failed(ctx, db, msg, now, error)
    return "failed"


def _flag_failed(db: Session, msg: Message, now: datetime, detail: str) -> None:
    """`delivery_failed`, once per message: a clinician must see what did not go out."""
    flags.raise_flag(
        db,
        FlagKind.delivery_failed,
        now,
        patient_id=msg.patient_id,
        session_id=msg.session_id,
        step=msg.step,
        message_id=msg.id,
        detail=detail,
        dedupe_key=flags.flag_key(FlagKind.delivery_failed, "message", msg.id),
    )


def mark_failed(ctx: Context, db: Session, msg: Message, now: datetime, error: str) -> None:
    """Permanent failure: the reason on the row, a flag for a clinician, email fallback if any."""
    _finish(msg, MessageStatus.failed, now, error)
    _flag_failed(db, msg, now, f"{msg.channel} to {msg.recipient}: {error}")
    log.warning("message %s failed for good (%s)", msg.id, msg.error_code or "no code")
    fallback_to_email(ctx, db, msg, now)


def fallback_to_email(ctx: Context, db: Session, msg: Message, now: datetime) -> Message | None:
    """A `channel: preferred` step whose SMS failed for good goes by email, if the patient consented."""
    if (
        msg.channel != ChannelName.sms
        or msg.kind != MessageKind.step
        or msg.recipient != Recipient.patient
        or not msg.session_id
        or not msg.step
    ):
        return None
    step = ctx.protocol.step(msg.step)
    if step is None or step.channel != "preferred":
        return None
    session = db.get(InfusionSession, msg.session_id)
    if session is None or session.status == SessionStatus.cancelled:
        return None
    address, reason = consent.recipient_address(db, session, session.patient, Recipient.patient, ChannelName.email)
    if reason:
        return None
    key = outbox.step_key(msg.session_id, msg.step, Recipient.patient, ChannelName.email, msg.part)
    if outbox.exists(db, key):
        return None
    email = outbox.add(
        db,
        key=key,
        kind=msg.kind,
        recipient=Recipient.patient,
        channel=ChannelName.email,
        to=address,
        template=msg.template,
        now=now,
        scheduled_for=now,
        expires_at=msg.expires_at,
        patient_id=msg.patient_id,
        session_id=msg.session_id,
        step=msg.step,
        part=msg.part,
        expects=msg.expects,
        context=dict(msg.context or {}),
    )
    db.flush()
    log.info("message %s: falling back to email as message %s", msg.id, email.id)
    return email


def dispatch_inline(
    out: Outbound, now: datetime, limit: int = TICK_BATCH, enqueue_urgent: outbox.EnqueueUrgent | None = None
) -> int:
    """Send the due rows in this process instead of enqueuing them (tests, benchmarks)."""

    def send_here(message_id: int, attempts: int) -> None:
        send_message(out, message_id, attempts, now, enqueue_urgent)

    return dispatch_due(out, now, send_here, limit=limit)
