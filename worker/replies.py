"""Inbound replies (SPEC §4): stored first, then read.

Order of business for one inbound SMS:
1. stored raw, in its own transaction (`store_inbound_sms`); a Twilio retry is stored once;
2. crisis language, whatever else the message is -> flag, auto-reply with 988/911, on-call alerts
   enqueued at once;
3. keywords (STOP family, START, HELP; Twilio's OptOutType wins when present);
4. matched by number to the patient, then to the patient's most recent open check-in;
5. parsed by what the check-in expects; a first unreadable answer gets one clarifying
   question, a second raises `unparsed`. The raw text is always kept.

A reply that fails half-way is rolled back to "stored, not processed" and the dispatcher's tick
processes it again (`process_pending`): never lost, never half-written.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Optional, Union

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import flags, phq9
from .config import get_settings
from .crisis import contains_crisis_language
from .db import is_postgres, session_scope
from .models import (
    Checkin,
    CheckinStatus,
    FlagKind,
    Message,
    MessageKind,
    MessageStatus,
    Patient,
    Reply,
    SmsOptOut,
)
from .parsing import classify_keyword, keyword_from_opt_out_type, parse_home, parse_mood, parse_phq9_item, \
    parse_yes_no
from .phones import maybe_e164
from .urgent import send_soon

log = logging.getLogger("aftercare.replies")

MAX_BODY = 10_000  # SMS tops out at 1,600; anything longer is stored truncated, with a note


# -- storing ----------------------------------------------------------------------------------
def store_inbound_sms(params: dict[str, str], now: datetime) -> tuple[int, bool]:
    """Store the raw inbound message in its own transaction. Returns (reply id, newly stored)."""
    sid = params["MessageSid"][:64]
    with session_scope() as db:
        existing = db.scalar(select(Reply.id).where(Reply.provider_id == sid))
        if existing is not None:
            return existing, False
    sender = params.get("From", "")
    body = params.get("Body", "")
    try:
        with session_scope() as db:
            reply = Reply(provider_id=sid, channel="sms", from_address=(maybe_e164(sender) or sender)[:320],
                          to_address=params.get("To", "")[:320], body=body[:MAX_BODY],
                          params={k: v[:2000] for k, v in params.items() if k != "Body"}, received_at=now)
            db.add(reply)
            db.flush()
            return reply.id, True
    except IntegrityError:  # the same MessageSid raced in twice: the other one stored it
        with session_scope() as db:
            return db.scalar(select(Reply.id).where(Reply.provider_id == sid)), False


# -- helpers ----------------------------------------------------------------------------------
def _patient_for(db: Session, phone: Optional[str]) -> Optional[Patient]:
    """The patient with this number; if several share it, the one with the newest open check-in."""
    if not phone:
        return None
    patients = list(db.scalars(select(Patient).where(Patient.phone == phone).order_by(Patient.id.desc())))
    if len(patients) <= 1:
        return patients[0] if patients else None
    newest = db.scalar(
        select(Checkin.patient_id)
        .where(Checkin.patient_id.in_([p.id for p in patients]),
               Checkin.status.in_([CheckinStatus.open.value, CheckinStatus.escalated.value]))
        .order_by(Checkin.opened_at.desc())
        .limit(1)
    )
    return next((p for p in patients if p.id == newest), patients[0])


def open_checkin(db: Session, patient_id: int, now: datetime) -> Optional[Checkin]:
    """The patient's most recent step that expects a reply and is still open."""
    return db.scalar(
        select(Checkin)
        .where(Checkin.patient_id == patient_id,
               Checkin.status.in_([CheckinStatus.open.value, CheckinStatus.escalated.value]),
               Checkin.closes_at > now)
        .order_by(Checkin.opened_at.desc(), Checkin.id.desc())
        .limit(1)
    )


def queue_message(db: Session, *, kind: MessageKind, key: str, template: str, channel: str, to: Optional[str],
                  now: datetime, patient_id: Optional[int] = None, session_id: Optional[int] = None,
                  step: Optional[str] = None, part: int = 0, recipient: str = "patient",
                  context: Optional[dict] = None) -> Optional[Message]:
    """An outbox row due now, sent at once after commit. Idempotent on `key`."""
    if db.scalar(select(Message.id).where(Message.dedupe_key == key)):
        return None
    msg = Message(dedupe_key=key, kind=kind.value, patient_id=patient_id, session_id=session_id, step=step,
                  part=part, recipient=recipient, channel=channel, to_address=to, template=template,
                  context=context or {}, status=MessageStatus.scheduled.value, scheduled_for=now,
                  next_attempt_at=now, created_at=now, updated_at=now)
    db.add(msg)
    db.flush()
    send_soon(db, msg.id)
    return msg


def _auto_reply(db: Session, reply: Reply, template: str, now: datetime, context: Optional[dict] = None) -> None:
    """An answer to the sender (HELP, a clarifying question); it honours their opt-out."""
    queue_message(db, kind=MessageKind.reply, key=f"r{reply.id}:{template}", template=template, channel="sms",
                  to=reply.from_address, now=now, patient_id=reply.patient_id, session_id=reply.session_id,
                  step=reply.step, recipient="patient" if reply.patient_id else "sender", context=context)


# -- crisis -----------------------------------------------------------------------------------
def raise_crisis(db: Session, now: datetime, *, reply: Optional[Reply], patient_id: Optional[int],
                 session_id: Optional[int], step: Optional[str], detail: str, key: str,
                 reply_to: Optional[str] = None) -> None:
    """Flag `crisis`, answer the patient with 988/911 and the clinic's phone, alert on-call at once."""
    settings = get_settings()
    flag = flags.raise_flag(db, FlagKind.crisis, now, patient_id=patient_id, session_id=session_id, step=step,
                            reply_id=reply.id if reply else None, detail=detail, dedupe_key=key)
    if reply_to:
        # urgent: goes even to a number that opted out -- it answers a message they just sent
        queue_message(db, kind=MessageKind.reply, key=f"{key}:reply", template="crisis_reply",
                      channel="sms", to=reply_to, now=now, patient_id=patient_id, session_id=session_id,
                      step=step, recipient="patient" if patient_id else "sender", context={"urgent": True})
    flag_url = f"{settings.public_base_url}/flags/{flag.id}"
    for channel, contacts in (("sms", settings.oncall_sms_list), ("email", settings.oncall_email_list)):
        for n, contact in enumerate(contacts):
            queue_message(db, kind=MessageKind.alert, key=f"{key}:oncall:{channel}:{n}", template="oncall_alert",
                          channel=channel, to=maybe_e164(contact) if channel == "sms" else contact, now=now,
                          recipient="oncall", context={"flag_url": flag_url, "urgent": True})
    log.warning("crisis flag %s raised; %s on-call alerts queued", flag.id,
                len(settings.oncall_sms_list) + len(settings.oncall_email_list))


# -- answers ----------------------------------------------------------------------------------
Value = Union[bool, int, None]


def parse_for(expects: str, text: str) -> Value:
    if expects == "yes_no":
        return parse_yes_no(text)
    if expects == "home":
        return True if parse_home(text) else None
    if expects == "mood":
        return parse_mood(text)
    if expects == "phq9":
        return parse_phq9_item(text)
    return None


def previous_mood(db: Session, checkin: Checkin) -> Optional[int]:
    return db.scalar(
        select(Checkin.score)
        .where(Checkin.patient_id == checkin.patient_id, Checkin.expects == "mood", Checkin.id != checkin.id,
               Checkin.status == CheckinStatus.answered.value, Checkin.score.is_not(None))
        .order_by(Checkin.answered_at.desc(), Checkin.id.desc())
        .limit(1)
    )


def _close(checkin: Checkin, now: datetime, score: Optional[int]) -> None:
    checkin.status = CheckinStatus.answered.value
    checkin.answered_at = now
    checkin.score = score
    checkin.updated_at = now


def apply_answer(db: Session, checkin: Checkin, reply: Reply, value: Value, now: datetime) -> str:
    """Record a valid answer on its check-in and raise what it calls for. Returns the outcome."""
    common = dict(patient_id=checkin.patient_id, session_id=checkin.session_id, step=checkin.step,
                  reply_id=reply.id)
    if checkin.expects == "yes_no":
        _close(checkin, now, 1 if value else 0)
        reply.score = checkin.score
        if not value:
            flags.raise_flag(db, FlagKind.ride_unconfirmed, now, **common, detail="patient answered NO",
                             dedupe_key=f"ride_unconfirmed:checkin:{checkin.id}")
        return "ride_confirmed" if value else "ride_declined"
    if checkin.expects == "home":
        _close(checkin, now, 1)
        return "home"
    if checkin.expects == "mood":
        before = previous_mood(db, checkin)
        _close(checkin, now, int(value))
        reply.score = int(value)
        if value <= 3 or (before is not None and before - value >= 3):
            why = f"mood {value}/10" + (f", previous {before}" if before is not None else "")
            flags.raise_flag(db, FlagKind.low_mood, now, **common, detail=why,
                             dedupe_key=f"low_mood:checkin:{checkin.id}")
        return "mood"
    if checkin.expects == "phq9":
        return _phq9_item(db, checkin, reply, int(value), now, common)
    return "ignored"


def _phq9_item(db: Session, checkin: Checkin, reply: Reply, value: int, now: datetime, common: dict) -> str:
    answers = list((checkin.state or {}).get("answers", []))
    if len(answers) >= 9:
        return "ignored"
    answers.append(value)
    checkin.state = {**(checkin.state or {}), "answers": answers}
    checkin.updated_at = now
    reply.score = value
    item = len(answers)
    if item - 1 == phq9.SUICIDE_ITEM and value >= 1:  # at once, before the survey ends
        raise_crisis(db, now, reply=reply, patient_id=checkin.patient_id, session_id=checkin.session_id,
                     step=checkin.step, detail=f"PHQ-9 item 9 answered {value}", key=f"crisis:phq9:{checkin.id}",
                     reply_to=reply.from_address if reply.channel == "sms" else None)
    if item < 9:
        patient = db.get(Patient, checkin.patient_id)
        queue_message(db, kind=MessageKind.followup, key=f"s{checkin.session_id}:{checkin.step}:patient:sms:{item + 1}",
                      template="phq9_question", channel="sms", to=patient.phone if patient else None, now=now,
                      patient_id=checkin.patient_id, session_id=checkin.session_id, step=checkin.step,
                      part=item + 1, context={"item": item + 1})
        return f"phq9_item_{item}"
    finish_phq9(db, checkin, answers, now, common)
    if reply.channel == "sms":
        patient = db.get(Patient, checkin.patient_id)
        queue_message(db, kind=MessageKind.followup, key=f"s{checkin.session_id}:{checkin.step}:patient:sms:10",
                      template="phq9_done", channel="sms", to=patient.phone if patient else None, now=now,
                      patient_id=checkin.patient_id, session_id=checkin.session_id, step=checkin.step, part=10)
    return "phq9_complete"


def finish_phq9(db: Session, checkin: Checkin, answers: list[int], now: datetime, common: dict) -> None:
    score = phq9.total(answers)
    _close(checkin, now, score)
    checkin.band = phq9.band(score)
    if score >= 15:
        flags.raise_flag(db, FlagKind.low_mood, now, **common, detail=f"PHQ-9 total {score} ({checkin.band})",
                         dedupe_key=f"low_mood:checkin:{checkin.id}")


def _unreadable(db: Session, checkin: Checkin, reply: Reply, now: datetime) -> str:
    """One clarifying question; the second unreadable answer raises `unparsed`."""
    checkin.failed_parses += 1
    checkin.updated_at = now
    if checkin.failed_parses == 1:
        context = {}
        if checkin.expects == "phq9":
            context["item"] = len((checkin.state or {}).get("answers", [])) + 1
        _auto_reply(db, reply, f"clarify_{checkin.expects}", now, context)
        return "clarify"
    flags.raise_flag(db, FlagKind.unparsed, now, patient_id=checkin.patient_id, session_id=checkin.session_id,
                     step=checkin.step, reply_id=reply.id, detail="second unreadable answer",
                     dedupe_key=f"unparsed:reply:{reply.id}")
    return "unparsed"


# -- processing -------------------------------------------------------------------------------
def opt_out(db: Session, phone: str, now: datetime, source: str) -> int:
    """Opt the number out of SMS; its pending SMS become `skipped`. Returns how many."""
    if db.get(SmsOptOut, phone) is None:
        db.add(SmsOptOut(phone=phone, opted_out_at=now, source=source))
    res = db.execute(
        update(Message)
        .where(Message.status == MessageStatus.scheduled.value, Message.channel == "sms",
               Message.to_address == phone)
        .values(status=MessageStatus.skipped.value, error="opted out of SMS", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount or 0


def opt_in(db: Session, phone: str, now: datetime) -> int:
    """Opt the number back in; SMS skipped only for the opt-out and still in the future go again."""
    row = db.get(SmsOptOut, phone)
    if row is not None:
        db.delete(row)
    res = db.execute(
        update(Message)
        .where(Message.status == MessageStatus.skipped.value, Message.error == "opted out of SMS",
               Message.channel == "sms", Message.to_address == phone, Message.scheduled_for > now)
        .values(status=MessageStatus.scheduled.value, error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount or 0


def _keyword(reply: Reply) -> Optional[str]:
    return keyword_from_opt_out_type((reply.params or {}).get("OptOutType")) or classify_keyword(reply.body)


def process(reply_id: int, now: datetime) -> None:
    """Read one stored reply and act on it, in one transaction. Safe to call twice.

    Auto-replies (HELP, clarifications, 988) go through the outbox -- tracked, rate-limited,
    opt-out aware -- and are enqueued at commit, so the webhook answers an empty TwiML.
    """
    with session_scope() as db:
        q = select(Reply).where(Reply.id == reply_id)
        if is_postgres(db):
            q = q.with_for_update()
        reply = db.scalar(q)
        if reply is None or reply.processed_at is not None:
            return None
        reply.outcome = _process(db, reply, now)
        reply.processed_at = now
        log.info("reply %s: %s", reply.id, reply.outcome)


def _process(db: Session, reply: Reply, now: datetime) -> str:
    patient = _patient_for(db, reply.from_address)
    checkin = open_checkin(db, patient.id, now) if patient else None
    reply.patient_id = patient.id if patient else None
    if checkin is not None:
        reply.checkin_id, reply.session_id, reply.step = checkin.id, checkin.session_id, checkin.step

    crisis = contains_crisis_language(reply.body)
    if crisis:
        raise_crisis(db, now, reply=reply, patient_id=reply.patient_id, session_id=reply.session_id,
                     step=reply.step, detail="crisis language in a reply", key=f"crisis:reply:{reply.id}",
                     reply_to=reply.from_address)

    keyword = _keyword(reply)
    if keyword == "stop" and reply.from_address:
        skipped = opt_out(db, reply.from_address, now, "keyword")
        log.info("number opted out of SMS; %s pending SMS skipped", skipped)
        return "opt_out"
    if keyword == "start" and reply.from_address:
        revived = opt_in(db, reply.from_address, now)
        log.info("number opted back in to SMS; %s future SMS rescheduled", revived)
        return "opt_in"
    if keyword == "help":
        _auto_reply(db, reply, "help", now)
        return "help"

    if patient is None or checkin is None:
        flags.raise_flag(db, FlagKind.unmatched, now, patient_id=reply.patient_id, reply_id=reply.id,
                         detail="unknown number" if patient is None else "no open step",
                         dedupe_key=f"unmatched:reply:{reply.id}")
        return "crisis" if crisis else "unmatched"

    value = parse_for(checkin.expects, reply.body)
    if checkin.expects == "phq9" and (checkin.state or {}).get("mode") != "sms":
        # The PHQ-9 of this patient is a web form: a text is kept, not read as an item answer.
        flags.raise_flag(db, FlagKind.unmatched, now, patient_id=patient.id, session_id=checkin.session_id,
                         step=checkin.step, reply_id=reply.id, detail="text while a web-form check-in is open",
                         dedupe_key=f"unmatched:reply:{reply.id}")
        return "crisis" if crisis else "unmatched"
    if value is None:
        if crisis:
            return "crisis"  # already answered with 988; no clarifying question on top
        return _unreadable(db, checkin, reply, now)
    outcome = apply_answer(db, checkin, reply, value, now)
    return f"crisis+{outcome}" if crisis else outcome


def process_pending(now: datetime, older_than: timedelta = timedelta(seconds=30), limit: int = 100) -> int:
    """Replies stored but not processed (a crash between store and process): process them now."""
    with session_scope() as db:
        ids = list(db.scalars(select(Reply.id).where(Reply.processed_at.is_(None), Reply.channel == "sms",
                                                     Reply.received_at < now - older_than).limit(limit)))
    done = 0
    for reply_id in ids:
        try:
            process(reply_id, now)
            done += 1
        except Exception:  # noqa: BLE001 - keep going; this one stays pending and is visible
            log.exception("reply %s could not be processed", reply_id)
    return done
