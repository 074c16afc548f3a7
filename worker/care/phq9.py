"""The PHQ-9 conversation, in one place: by SMS one question a text, or the whole web form.

A patient who chose the PHQ-9 by text gets an intro, then item 1; each valid answer queues the
next item at once. Item 9 >= 1 raises `crisis` the moment it is answered, before the survey
ends. The total and its band are stored on the check-in; a total of 15+ raises `low_mood`.
Everyone else answers the same nine items on a signed-link web form (`record_form`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..clinical import phq9 as instrument
from ..clinical import thresholds
from ..core import outbox
from ..core.context import Context
from ..core.models import ChannelName, Checkin, Expects, FlagKind, MessageKind, Patient, Recipient, Reply, ReplyChannel
from . import escalation, flags

DONE_PART = 10  # the "thank you" text after item 9


def by_sms(checkin: Checkin) -> bool:
    return (checkin.state or {}).get("mode") == "sms"


def answers_so_far(checkin: Checkin) -> list[int]:
    return list((checkin.state or {}).get("answers", []))


def initial_state(by_text: bool) -> dict[str, Any]:
    return {"mode": "sms", "answers": []} if by_text else {"mode": "web"}


def _text(
    db: Session,
    checkin: Checkin,
    part: int,
    template: str,
    to: str | None,
    now: datetime,
    expects: Expects = Expects.none,
    context: dict[str, Any] | None = None,
) -> None:
    """One text of the survey (part n = item n; DONE_PART the thanks), right after the caller's commit."""
    outbox.queue(
        db,
        key=outbox.step_key(checkin.session_id, checkin.step, Recipient.patient, ChannelName.sms, part),
        kind=MessageKind.followup,
        template=template,
        channel=ChannelName.sms,
        to=to,
        now=now,
        patient_id=checkin.patient_id,
        session_id=checkin.session_id,
        step=checkin.step,
        part=part,
        expects=expects,
        context=context,
    )


def ask(db: Session, checkin: Checkin, item: int, to: str | None, now: datetime) -> None:
    """Queue item `item` (1-9) by SMS."""
    _text(db, checkin, item, "phq9_question", to, now, Expects.phq9, {"item": item})


def _crisis(ctx: Context, db: Session, checkin: Checkin, reply: Reply, answer: int, now: datetime) -> None:
    escalation.raise_crisis(
        ctx,
        db,
        now,
        reply=reply,
        patient_id=checkin.patient_id,
        session_id=checkin.session_id,
        step=checkin.step,
        detail=f"PHQ-9 item 9 answered {answer}",
        key=flags.flag_key(FlagKind.crisis, "phq9", checkin.id),
        reply_to=reply.from_address if reply.channel == ReplyChannel.sms else None,
    )


def record_item(ctx: Context, db: Session, checkin: Checkin, reply: Reply, value: int, now: datetime) -> str:
    """One answer (0-3) by text: store it, escalate item 9 at once, ask the next or finish."""
    answers = answers_so_far(checkin)
    if len(answers) >= len(instrument.ITEM_LOINC):
        return "ignored"
    answers.append(value)
    checkin.state = {**(checkin.state or {}), "answers": answers}
    checkin.updated_at = now
    reply.score = value
    item = len(answers)
    if item - 1 == instrument.SUICIDE_ITEM and thresholds.phq9_item9_crisis(value):
        _crisis(ctx, db, checkin, reply, value, now)
    patient = db.get(Patient, checkin.patient_id)
    phone = patient.phone if patient else None
    if item < len(instrument.ITEM_LOINC):
        ask(db, checkin, item + 1, phone, now)
        return f"phq9_item_{item}"
    finish(db, checkin, answers, reply, now)
    if reply.channel == ReplyChannel.sms:
        _text(db, checkin, DONE_PART, "phq9_done", phone, now)
    return "phq9_complete"


def record_form(ctx: Context, db: Session, checkin: Checkin, reply: Reply, answers: list[int], now: datetime) -> str:
    """All nine answers from the web form at once. Returns the outcome."""
    checkin.state = {**(checkin.state or {}), "mode": "web", "answers": answers}
    if instrument.item9_positive(answers):
        _crisis(ctx, db, checkin, reply, answers[instrument.SUICIDE_ITEM], now)
    finish(db, checkin, answers, reply, now)
    reply.score = checkin.score
    return "phq9_complete"


def finish(db: Session, checkin: Checkin, answers: list[int], reply: Reply | None, now: datetime) -> None:
    """Total and band on the check-in; `low_mood` at a total of 15 or more."""
    score = instrument.total(answers)
    checkin.mark_answered(now, score)
    checkin.band = instrument.band(score)
    if thresholds.phq9_low_mood(score):
        flags.raise_flag(
            db,
            FlagKind.low_mood,
            now,
            patient_id=checkin.patient_id,
            session_id=checkin.session_id,
            step=checkin.step,
            reply_id=reply.id if reply else None,
            detail=f"PHQ-9 total {score} ({checkin.band})",
            dedupe_key=flags.flag_key(FlagKind.low_mood, "checkin", checkin.id),
        )
