"""Turn a session into outbox rows, and keep them in step with the session.

`sync_session` is the one entry point: it computes the messages the session should have in
its current state and inserts, re-times or cancels rows to match. Calling it twice changes
nothing (rows are keyed by session x step x recipient x channel x part), which is what makes
complete / reschedule / re-post idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..core import outbox
from ..core.models import ChannelName, InfusionSession, Message, MessageKind, MessageStatus, Recipient, SessionStatus
from ..core.protocol import Protocol, QuietHours, Step
from .consent import recipient_address


def defer_for_quiet_hours(due: datetime, tz: ZoneInfo, quiet: QuietHours | None) -> datetime:
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
    return end_local.astimezone(UTC)


def step_channels(db: Session, session: InfusionSession, step: Step) -> list[ChannelName]:
    if step.to == "driver" or step.channel == "sms":
        return [ChannelName.sms]
    if step.channel == "email":
        return [ChannelName.email]
    if step.channel == "both":
        return [ChannelName.sms, ChannelName.email]
    preferred = session.patient.preferred_channel
    other = ChannelName.email if preferred == ChannelName.sms else ChannelName.sms
    # `preferred` falls back to the other channel when the preferred one cannot be used.
    if recipient_address(db, session, session.patient, Recipient.patient, preferred)[1] is None:
        return [preferred]
    if recipient_address(db, session, session.patient, Recipient.patient, other)[1] is None:
        return [other]
    return [preferred]


@dataclass(frozen=True)
class Timing:
    scheduled_for: datetime
    expires_at: datetime | None


def step_timing(session: InfusionSession, step: Step, protocol: Protocol) -> Timing | None:
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


def sync_session(db: Session, session: InfusionSession, now: datetime, protocol: Protocol) -> SyncResult:
    """Make the session's outbox rows match its state. Idempotent. Caller commits."""
    result = SyncResult()
    if session.status == SessionStatus.cancelled:
        res = db.execute(
            update(Message)
            .where(Message.session_id == session.id, Message.status == MessageStatus.scheduled)
            .values(status=MessageStatus.cancelled, error="session cancelled", updated_at=now)
        )
        result.cancelled = res.rowcount or 0  # type: ignore[attr-defined]
        return result

    existing = {m.dedupe_key: m for m in db.scalars(select(Message).where(Message.session_id == session.id))}
    for step in protocol.steps:
        timing = step_timing(session, step, protocol)
        if timing is None:
            continue
        for channel in step_channels(db, session, step):
            key = outbox.step_key(session.id, step.name, step.to, channel)
            row = existing.get(key)
            if row is not None:
                if (
                    row.status == MessageStatus.scheduled
                    and row.attempts == 0
                    and (row.scheduled_for != timing.scheduled_for or row.expires_at != timing.expires_at)
                ):
                    row.scheduled_for = row.next_attempt_at = timing.scheduled_for
                    row.expires_at = timing.expires_at
                    result.retimed += 1
                continue
            address, reason = recipient_address(db, session, session.patient, step.to, channel)
            row = outbox.add(
                db,
                key=key,
                kind=MessageKind.step,
                recipient=step.to,
                channel=channel,
                to=address,
                template=step.template,
                now=now,
                scheduled_for=timing.scheduled_for,
                expires_at=timing.expires_at,
                patient_id=session.patient_id,
                session_id=session.id,
                step=step.name,
                expects=step.expects,
                skip_reason=reason,
            )
            existing[key] = row
            result.created += 1
            result.skipped += bool(reason)
    db.flush()
    return result
