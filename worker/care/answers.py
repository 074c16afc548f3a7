"""Answers: one `record_answer` for a text and for a click or form on a web page alike.

A valid answer closes its check-in and raises what it calls for (`ride_unconfirmed` on NO,
`low_mood` on a low or falling mood, the PHQ-9's own rules). An unreadable text gets one
clarifying question; a second raises `unparsed`. The raw text is always kept on the reply.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clinical import thresholds
from ..clinical.parsing import parse_home, parse_mood, parse_phq9_item, parse_yes_no
from ..core import outbox
from ..core.context import Context
from ..core.models import (
    ChannelName,
    Checkin,
    CheckinStatus,
    Expects,
    FlagKind,
    MessageKind,
    Recipient,
    Reply,
)
from . import flags, phq9

Value = bool | int | list[int] | None


def parse_for(expects: Expects, text: str) -> Value:
    """The answer in a text, by what the check-in expects; None when it cannot be read with confidence."""
    if expects == Expects.yes_no:
        return parse_yes_no(text)
    if expects == Expects.home:
        return True if parse_home(text) else None
    if expects == Expects.mood:
        return parse_mood(text)
    if expects == Expects.phq9:
        return parse_phq9_item(text)
    return None


def previous_mood(db: Session, checkin: Checkin) -> int | None:
    return db.scalar(
        select(Checkin.score)
        .where(
            Checkin.patient_id == checkin.patient_id,
            Checkin.expects == Expects.mood,
            Checkin.id != checkin.id,
            Checkin.status == CheckinStatus.answered,
            Checkin.score.is_not(None),
        )
        .order_by(Checkin.answered_at.desc(), Checkin.id.desc())
        .limit(1)
    )


def _flag(db: Session, kind: FlagKind, checkin: Checkin, reply: Reply, now: datetime, detail: str) -> None:
    """The answer's flag, once per check-in."""
    flags.raise_flag(
        db,
        kind,
        now,
        patient_id=checkin.patient_id,
        session_id=checkin.session_id,
        step=checkin.step,
        reply_id=reply.id,
        detail=detail,
        dedupe_key=flags.flag_key(kind, "checkin", checkin.id),
    )


def record_answer(ctx: Context, db: Session, checkin: Checkin, reply: Reply, value: Value, now: datetime) -> str:
    """Record a valid answer on its check-in and raise what it calls for. Returns the outcome.

    `value` is what `parse_for` read from a text, or what a web page submitted: True/False,
    a mood 0-10, one PHQ-9 item 0-3 (by text), or all nine PHQ-9 answers (the web form).
    """
    if checkin.expects == Expects.yes_no:
        checkin.mark_answered(now, 1 if value else 0)
        reply.score = checkin.score
        if not value:
            _flag(db, FlagKind.ride_unconfirmed, checkin, reply, now, "patient answered NO")
        return "ride_confirmed" if value else "ride_declined"
    if checkin.expects == Expects.home:
        checkin.mark_answered(now, 1)
        return "home"
    if checkin.expects == Expects.mood and isinstance(value, int):
        before = previous_mood(db, checkin)
        checkin.mark_answered(now, int(value))
        reply.score = int(value)
        if thresholds.low_mood(value, before):
            why = f"mood {value}/10" + (f", previous {before}" if before is not None else "")
            _flag(db, FlagKind.low_mood, checkin, reply, now, why)
        return "mood"
    if checkin.expects == Expects.phq9 and isinstance(value, list):
        return phq9.record_form(ctx, db, checkin, reply, value, now)
    if checkin.expects == Expects.phq9 and isinstance(value, int):
        return phq9.record_item(ctx, db, checkin, reply, value, now)
    return "ignored"


def auto_reply(
    db: Session, reply: Reply, template: str, now: datetime, context: dict[str, object] | None = None
) -> None:
    """An answer to the sender (HELP, a clarifying question); sending honours their opt-out."""
    outbox.queue(
        db,
        key=outbox.auto_reply_key(reply.id, template),
        kind=MessageKind.reply,
        template=template,
        channel=ChannelName.sms,
        to=reply.from_address,
        now=now,
        patient_id=reply.patient_id,
        session_id=reply.session_id,
        step=reply.step,
        recipient=Recipient.patient if reply.patient_id else Recipient.sender,
        context=context,
    )


def unreadable(db: Session, checkin: Checkin, reply: Reply, now: datetime) -> str:
    """One clarifying question; the second unreadable answer raises `unparsed`."""
    checkin.failed_parses += 1
    checkin.updated_at = now
    if checkin.failed_parses == 1:
        context: dict[str, object] = {}
        if checkin.expects == Expects.phq9:
            context["item"] = len(phq9.answers_so_far(checkin)) + 1
        auto_reply(db, reply, f"clarify_{checkin.expects}", now, context)
        return "clarify"
    flags.raise_flag(
        db,
        FlagKind.unparsed,
        now,
        patient_id=checkin.patient_id,
        session_id=checkin.session_id,
        step=checkin.step,
        reply_id=reply.id,
        detail="second unreadable answer",
        dedupe_key=flags.flag_key(FlagKind.unparsed, "reply", reply.id),
    )
    return "unparsed"
