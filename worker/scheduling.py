"""Turn a session into outbox rows, and keep them in step with the session.

`sync_session` is the one entry point: it computes the messages the session should have in
its current state and inserts, re-times or cancels rows to match. Calling it twice changes
nothing (rows are keyed by session x step x recipient x channel x part), which is what makes
complete / reschedule / re-post idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Optional
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import InfusionSession, Message, MessageKind, MessageStatus, Patient, SessionStatus, SmsOptOut
from .protocol import Protocol, QuietHours, Step, get_protocol


def defer_for_quiet_hours(due: datetime, tz: ZoneInfo, quiet: Optional[QuietHours]) -> datetime:
    """A time inside the recipient's quiet hours moves to when they end, in local wall time.

    Wall-clock arithmetic (not UTC offsets) keeps 08:00 at 08:00 across DST changes.
    """
    if quiet is None:
        return due
    local = due.astimezone(tz)
    if not quiet.contains(local.time()):
        return due
    day: date = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)  # the window spans midnight: it ends tomorrow
    end_local = datetime.combine(day, quiet.end, tzinfo=tz)
    return end_local.astimezone(timezone.utc)


def dedupe_key(session_id: int, step: str, recipient: str, channel: str, part: int = 0) -> str:
    return f"s{session_id}:{step}:{recipient}:{channel}:{part}"


def is_opted_out(db: Session, phone: Optional[str]) -> bool:
    return bool(phone) and db.get(SmsOptOut, phone) is not None


def recipient_address(db: Session, session: Optional[InfusionSession], patient: Optional[Patient],
                      recipient: str, channel: str, address: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """(address, reason-not-to-send). The same rules at scheduling and again at send time."""
    if recipient == "driver":
        phone = session.driver_phone if session else None
        if not phone:
            return None, "no driver phone"
        if is_opted_out(db, phone):
            return phone, "driver opted out of SMS"
        return phone, None
    if recipient == "oncall":
        if channel == "sms" and is_opted_out(db, address):
            return address, "on-call number opted out of SMS"
        return address, None
    assert patient is not None
    if channel == "sms":
        if not patient.phone:
            return None, "no phone number"
        if not patient.sms_consent:
            return patient.phone, "no SMS consent"
        if is_opted_out(db, patient.phone):
            return patient.phone, "opted out of SMS"
        return patient.phone, None
    if not patient.email:
        return None, "no email address"
    if not patient.email_consent:
        return patient.email, "no email consent"
    return patient.email, None


def step_channels(db: Session, session: InfusionSession, step: Step) -> list[str]:
    if step.to == "driver" or step.channel == "sms":
        return ["sms"]
    if step.channel == "email":
        return ["email"]
    if step.channel == "both":
        return ["sms", "email"]
    preferred = session.patient.preferred_channel
    other = "email" if preferred == "sms" else "sms"
    # `preferred` falls back to the other channel when the preferred one cannot be used.
    if recipient_address(db, session, session.patient, "patient", preferred)[1] is None:
        return [preferred]
    if recipient_address(db, session, session.patient, "patient", other)[1] is None:
        return [other]
    return [preferred]


@dataclass(frozen=True)
class Timing:
    scheduled_for: datetime
    expires_at: Optional[datetime]


def step_timing(session: InfusionSession, step: Step, protocol: Protocol) -> Optional[Timing]:
    anchor = session.scheduled_start if step.anchor == "session_start" else session.ended_at
    if anchor is None:
        return None  # end-anchored steps wait for the session to be completed
    due = anchor + step.offset
    if step.quiet_hours:
        due = defer_for_quiet_hours(due, ZoneInfo(session.patient.timezone), protocol.quiet_hours)
    expires = due + step.expires_after if step.expires_after else None
    return Timing(due, expires)


@dataclass
class SyncResult:
    created: int = 0
    retimed: int = 0
    cancelled: int = 0
    skipped: int = 0


def sync_session(db: Session, session: InfusionSession, now: datetime,
                 protocol: Optional[Protocol] = None) -> SyncResult:
    """Make the session's outbox rows match its state. Idempotent. Caller commits."""
    protocol = protocol or get_protocol()
    result = SyncResult()
    if session.status == SessionStatus.cancelled.value:
        res = db.execute(
            update(Message)
            .where(Message.session_id == session.id, Message.status == MessageStatus.scheduled.value)
            .values(status=MessageStatus.cancelled.value, error="session cancelled", updated_at=now)
        )
        result.cancelled = res.rowcount or 0
        return result

    existing = {m.dedupe_key: m for m in db.scalars(select(Message).where(Message.session_id == session.id))}
    for step in protocol.steps:
        timing = step_timing(session, step, protocol)
        if timing is None:
            continue
        for channel in step_channels(db, session, step):
            key = dedupe_key(session.id, step.name, step.to, channel)
            row = existing.get(key)
            if row is not None:
                if row.status == MessageStatus.scheduled.value and row.attempts == 0 and (
                    row.scheduled_for != timing.scheduled_for or row.expires_at != timing.expires_at
                ):
                    row.scheduled_for = row.next_attempt_at = timing.scheduled_for
                    row.expires_at = timing.expires_at
                    result.retimed += 1
                continue
            address, reason = recipient_address(db, session, session.patient, step.to, channel)
            row = Message(
                dedupe_key=key,
                kind=MessageKind.step.value,
                session_id=session.id,
                patient_id=session.patient_id,
                step=step.name,
                recipient=step.to,
                channel=channel,
                to_address=address,
                template=step.template,
                context={},
                scheduled_for=timing.scheduled_for,
                next_attempt_at=timing.scheduled_for,
                expires_at=timing.expires_at,
                status=MessageStatus.skipped.value if reason else MessageStatus.scheduled.value,
                error=reason,
                created_at=now,
                updated_at=now,
            )
            db.add(row)
            existing[key] = row
            result.created += 1
            result.skipped += bool(reason)
    db.flush()
    return result
