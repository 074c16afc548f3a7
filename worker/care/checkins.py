"""Check-ins: a step that expects a reply, open from its first send until answered or closed.

Escalation timers live here, in the database, and fire from a periodic task (`run_timers`)
-- never from delayed Celery tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..core.context import Context
from ..core.models import (
    ChannelName,
    Checkin,
    CheckinStatus,
    Expects,
    FlagKind,
    Message,
    MessageKind,
    Recipient,
)
from . import flags, phq9

# The flag a step's silence raises, by what it expects.
ESCALATION_FLAG = {Expects.yes_no: FlagKind.ride_unconfirmed, Expects.home: FlagKind.not_home}
OPEN = (CheckinStatus.open, CheckinStatus.escalated)
TIMER_BATCH = 500


def on_sent(ctx: Context, db: Session, msg: Message, now: datetime) -> Checkin | None:
    """Open the step's check-in the first time one of its messages goes out."""
    if msg.kind != MessageKind.step or msg.recipient != Recipient.patient or msg.session_id is None:
        return None
    if msg.expects == Expects.none or msg.step is None or msg.patient_id is None:
        return None
    existing = db.scalar(select(Checkin).where(Checkin.session_id == msg.session_id, Checkin.step == msg.step))
    if existing is not None:
        return None
    step = ctx.protocol.step(msg.step)
    escalate_at = msg.scheduled_for + step.escalate_after if step and step.escalate_after else None
    closes_at = max(now + timedelta(hours=ctx.settings.checkin_open_hours), escalate_at or now)
    by_text = (
        msg.expects == Expects.phq9
        and msg.channel == ChannelName.sms
        and msg.patient is not None
        and msg.patient.phq9_by_sms
    )
    state = phq9.initial_state(by_text) if msg.expects == Expects.phq9 else {}
    checkin = Checkin(
        session_id=msg.session_id,
        patient_id=msg.patient_id,
        step=msg.step,
        expects=msg.expects,
        opened_at=now,
        escalate_at=escalate_at,
        closes_at=closes_at,
        state=state,
        updated_at=now,
    )
    db.add(checkin)
    db.flush()
    if by_text:  # the intro is out: the first question follows at once
        phq9.ask(db, checkin, 1, msg.to_address, now)
    return checkin


def open_checkin(db: Session, patient_id: int, now: datetime) -> Checkin | None:
    """The patient's most recent step that expects a reply and is still open."""
    return db.scalar(
        select(Checkin)
        .where(Checkin.patient_id == patient_id, Checkin.status.in_(OPEN), Checkin.closes_at > now)
        .order_by(Checkin.opened_at.desc(), Checkin.id.desc())
        .limit(1)
    )


def claim(db: Session, checkin: Checkin, now: datetime) -> bool:
    """Only one answer per check-in, even for two clicks at once (a conditional UPDATE)."""
    res = db.execute(
        update(Checkin)
        .where(Checkin.id == checkin.id, Checkin.status.in_(OPEN))
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def run_timers(db: Session, now: datetime) -> int:
    """Raise the flag of every check-in whose time ran out; close the ones past their window."""
    fired = 0
    due = db.scalars(
        select(Checkin).where(Checkin.status == CheckinStatus.open, Checkin.escalate_at <= now).limit(TIMER_BATCH)
    )
    for c in due:
        kind = ESCALATION_FLAG.get(c.expects)
        c.status = CheckinStatus.escalated
        c.updated_at = now
        if kind is not None:
            flags.raise_flag(
                db,
                kind,
                now,
                patient_id=c.patient_id,
                session_id=c.session_id,
                step=c.step,
                dedupe_key=flags.flag_key(kind, "checkin", c.id),
                detail="no valid reply in time",
            )
        fired += 1
    stale = db.scalars(select(Checkin).where(Checkin.status.in_(OPEN), Checkin.closes_at <= now).limit(TIMER_BATCH))
    for c in stale:
        c.status = CheckinStatus.expired
        c.updated_at = now
        fired += 1
    return fired
