"""Reading one stored inbound text, in one transaction:

1. crisis language, whatever else the message is -> flag, 988/911 answer, on-call alerts queued;
2. keywords (STOP family, START, HELP; Twilio's OptOutType wins when present);
3. matched by number to the patient, then to the patient's most recent open check-in;
4. answered: parsed by what the check-in expects and recorded (`care.answers.record_answer`);
   a first unreadable answer gets one clarifying question, a second raises `unparsed`.

A reply that fails half-way is rolled back to "stored, not processed" and `process_pending`
(a periodic task) reads it again: never lost, never half-written.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..care import answers, checkins, consent, escalation, flags, phq9
from ..clinical.crisis import contains_crisis_language
from ..clinical.parsing import classify_keyword, keyword_from_opt_out_type
from ..core import outbox
from ..core.context import Context
from ..core.db import is_postgres
from ..core.models import Checkin, Expects, FlagKind, Patient, Reply, ReplyChannel

log = logging.getLogger("aftercare.inbound")


def patient_for(db: Session, phone: str | None) -> Patient | None:
    """The patient with this number; if several share it, the one with the newest open check-in."""
    if not phone:
        return None
    patients = list(db.scalars(select(Patient).where(Patient.phone == phone).order_by(Patient.id.desc())))
    if len(patients) <= 1:
        return patients[0] if patients else None
    newest = db.scalar(
        select(Checkin.patient_id)
        .where(Checkin.patient_id.in_([p.id for p in patients]), Checkin.status.in_(checkins.OPEN))
        .order_by(Checkin.opened_at.desc())
        .limit(1)
    )
    return next((p for p in patients if p.id == newest), patients[0])


def _keyword(reply: Reply) -> str | None:
    return keyword_from_opt_out_type((reply.params or {}).get("OptOutType")) or classify_keyword(reply.body)


def process(ctx: Context, reply_id: int, now: datetime, enqueue_urgent: outbox.EnqueueUrgent | None = None) -> None:
    """Read one stored reply and act on it, in one transaction. Safe to call twice.

    Auto-replies (HELP, clarifications, 988) and on-call alerts are outbox rows (tracked,
    rate-limited, opt-out aware); the urgent ones go to `enqueue_urgent` after the commit.
    """
    with ctx.db.scope() as db:
        q = select(Reply).where(Reply.id == reply_id)
        if is_postgres(db):
            q = q.with_for_update()
        reply = db.scalar(q)
        if reply is None or reply.processed_at is not None:
            return None
        reply.outcome = _process(ctx, db, reply, now)
        reply.processed_at = now
        log.info("reply %s: %s", reply.id, reply.outcome)
    outbox.hand_over(db, enqueue_urgent)
    return None


def _process(ctx: Context, db: Session, reply: Reply, now: datetime) -> str:
    patient = patient_for(db, reply.from_address)
    checkin = checkins.open_checkin(db, patient.id, now) if patient else None
    reply.patient_id = patient.id if patient else None
    if checkin is not None:
        reply.checkin_id, reply.session_id, reply.step = checkin.id, checkin.session_id, checkin.step

    crisis = contains_crisis_language(reply.body)
    if crisis:
        escalation.raise_crisis(
            ctx,
            db,
            now,
            reply=reply,
            patient_id=reply.patient_id,
            session_id=reply.session_id,
            step=reply.step,
            detail="crisis language in a reply",
            key=flags.flag_key(FlagKind.crisis, "reply", reply.id),
            reply_to=reply.from_address,
        )

    keyword = _keyword(reply)
    if keyword == "stop" and reply.from_address:
        skipped = consent.opt_out(db, reply.from_address, now, "keyword")
        log.info("number opted out of SMS; %s pending SMS skipped", skipped)
        return "opt_out"
    if keyword == "start" and reply.from_address:
        revived = consent.opt_in(db, reply.from_address, now)
        log.info("number opted back in to SMS; %s future SMS rescheduled", revived)
        return "opt_in"
    if keyword == "help":
        answers.auto_reply(db, reply, "help", now)
        return "help"

    if patient is None or checkin is None:
        flags.raise_flag(
            db,
            FlagKind.unmatched,
            now,
            patient_id=reply.patient_id,
            reply_id=reply.id,
            detail="unknown number" if patient is None else "no open step",
            dedupe_key=flags.flag_key(FlagKind.unmatched, "reply", reply.id),
        )
        return "crisis" if crisis else "unmatched"

    value = answers.parse_for(checkin.expects, reply.body)
    if checkin.expects == Expects.phq9 and not phq9.by_sms(checkin):
        # The PHQ-9 of this patient is a web form: a text is kept, not read as an item answer.
        flags.raise_flag(
            db,
            FlagKind.unmatched,
            now,
            patient_id=patient.id,
            session_id=checkin.session_id,
            step=checkin.step,
            reply_id=reply.id,
            detail="text while a web-form check-in is open",
            dedupe_key=flags.flag_key(FlagKind.unmatched, "reply", reply.id),
        )
        return "crisis" if crisis else "unmatched"
    if value is None:
        if crisis:
            return "crisis"  # already answered with 988; no clarifying question on top
        return answers.unreadable(db, checkin, reply, now)
    outcome = answers.record_answer(ctx, db, checkin, reply, value, now)
    return f"crisis+{outcome}" if crisis else outcome


def process_pending(
    ctx: Context,
    now: datetime,
    older_than: timedelta = timedelta(seconds=30),
    limit: int = 100,
    enqueue_urgent: outbox.EnqueueUrgent | None = None,
) -> int:
    """Replies stored but not processed (a crash between store and process): process them now."""
    with ctx.db.scope() as db:
        ids = list(
            db.scalars(
                select(Reply.id)
                .where(
                    Reply.processed_at.is_(None),
                    Reply.channel == ReplyChannel.sms,
                    Reply.received_at < now - older_than,
                )
                .limit(limit)
            )
        )
    done = 0
    for reply_id in ids:
        try:
            process(ctx, reply_id, now, enqueue_urgent)
            done += 1
        except Exception:  # keep going; this one stays pending and is visible
            log.exception("reply %s could not be processed", reply_id)
    return done
