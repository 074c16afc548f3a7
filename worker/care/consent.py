"""Who may be sent what: consent per channel, SMS opt-out by number, and the address to use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..core.models import ChannelName, InfusionSession, Message, MessageStatus, Patient, Recipient, SmsOptOut

OPTED_OUT = "opted out of SMS"  # the reason on rows skipped for an opt-out; START revives exactly these


def is_opted_out(db: Session, phone: str | None) -> bool:
    return bool(phone) and db.get(SmsOptOut, phone) is not None


def recipient_address(
    db: Session,
    session: InfusionSession | None,
    patient: Patient | None,
    recipient: Recipient,
    channel: ChannelName,
    address: str | None = None,
) -> tuple[str | None, str | None]:
    """(address, reason-not-to-send). The same rules at scheduling and again at send time."""
    if recipient == Recipient.driver:
        phone = session.driver_phone if session else None
        if not phone:
            return None, "no driver phone"
        if is_opted_out(db, phone):
            return phone, "driver opted out of SMS"
        return phone, None
    if recipient == Recipient.oncall:
        if channel == ChannelName.sms and is_opted_out(db, address):
            return address, "on-call number opted out of SMS"
        return address, None
    assert patient is not None
    if channel == ChannelName.sms:
        if not patient.phone:
            return None, "no phone number"
        if not patient.sms_consent:
            return patient.phone, "no SMS consent"
        if is_opted_out(db, patient.phone):
            return patient.phone, OPTED_OUT
        return patient.phone, None
    if not patient.email:
        return None, "no email address"
    if not patient.email_consent:
        return patient.email, "no email consent"
    return patient.email, None


def opt_out(db: Session, phone: str, now: datetime, source: str) -> int:
    """Opt the number out of SMS; its pending SMS become `skipped`. Returns how many."""
    remember_opt_out(db, phone, now, source)
    res = db.execute(
        update(Message)
        .where(
            Message.status == MessageStatus.scheduled, Message.channel == ChannelName.sms, Message.to_address == phone
        )
        .values(status=MessageStatus.skipped, error=OPTED_OUT, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount or 0  # type: ignore[attr-defined]


def opt_in(db: Session, phone: str, now: datetime) -> int:
    """Opt the number back in; SMS skipped only for the opt-out and still in the future go again."""
    row = db.get(SmsOptOut, phone)
    if row is not None:
        db.delete(row)
    res = db.execute(
        update(Message)
        .where(
            Message.status == MessageStatus.skipped,
            Message.error == OPTED_OUT,
            Message.channel == ChannelName.sms,
            Message.to_address == phone,
            Message.scheduled_for > now,
        )
        .values(status=MessageStatus.scheduled, error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount or 0  # type: ignore[attr-defined]


def remember_opt_out(db: Session, phone: str | None, now: datetime, source: str) -> None:
    """Record that this number opted out (a STOP, or the provider's 21610); pending rows are the caller's."""
    if phone and db.get(SmsOptOut, phone) is None:
        db.add(SmsOptOut(phone=phone, opted_out_at=now, source=source))
