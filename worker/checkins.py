"""Check-ins: a step that expects a reply, open from its first send until answered or closed.

Escalation timers live here, in the database, and are fired by the dispatcher's tick --
never by delayed Celery tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import flags
from .config import get_settings
from .models import Checkin, CheckinStatus, FlagKind, Message, MessageKind
from .protocol import get_protocol

# The flag a step's silence raises, by what it expects.
ESCALATION_FLAG = {"yes_no": FlagKind.ride_unconfirmed, "home": FlagKind.not_home}


def on_sent(db: Session, msg: Message, now: datetime) -> None:
    """Open the step's check-in the first time one of its messages goes out."""
    if msg.kind != MessageKind.step.value or msg.recipient != "patient" or msg.session_id is None:
        return
    step = get_protocol().step(msg.step or "")
    if step is None or step.expects == "none":
        return
    existing = db.scalar(select(Checkin).where(Checkin.session_id == msg.session_id, Checkin.step == step.name))
    if existing is not None:
        return
    hours = get_settings().checkin_open_hours
    escalate_at = msg.scheduled_for + step.escalate_after if step.escalate_after else None
    closes_at = max(now + timedelta(hours=hours), escalate_at or now)
    by_sms = step.expects == "phq9" and msg.channel == "sms" and msg.patient.phq9_by_sms
    state = {"mode": "sms", "answers": []} if by_sms else ({"mode": "web"} if step.expects == "phq9" else {})
    db.add(Checkin(session_id=msg.session_id, patient_id=msg.patient_id, step=step.name, expects=step.expects,
                   opened_at=now, escalate_at=escalate_at, closes_at=closes_at, state=state, updated_at=now))
    db.flush()
    if by_sms:  # the intro is out: the first question follows at once
        from .replies import queue_message

        queue_message(db, kind=MessageKind.followup, key=f"s{msg.session_id}:{step.name}:patient:sms:1",
                      template="phq9_question", channel="sms", to=msg.to_address, now=now,
                      patient_id=msg.patient_id, session_id=msg.session_id, step=step.name, part=1,
                      context={"item": 1})


def run_timers(db: Session, now: datetime) -> int:
    """Raise the flag of every check-in whose time ran out; close the ones past their window."""
    fired = 0
    due = db.scalars(
        select(Checkin).where(Checkin.status == CheckinStatus.open.value, Checkin.escalate_at <= now).limit(500)
    )
    for c in due:
        kind = ESCALATION_FLAG.get(c.expects)
        c.status = CheckinStatus.escalated.value
        c.updated_at = now
        if kind is not None:
            flags.raise_flag(db, kind, now, patient_id=c.patient_id, session_id=c.session_id, step=c.step,
                             dedupe_key=f"{kind.value}:checkin:{c.id}", detail="no valid reply in time")
        fired += 1
    stale = db.scalars(
        select(Checkin).where(
            Checkin.status.in_([CheckinStatus.open.value, CheckinStatus.escalated.value]), Checkin.closes_at <= now
        ).limit(500)
    )
    for c in stale:
        c.status = CheckinStatus.expired.value
        c.updated_at = now
        fired += 1
    return fired
