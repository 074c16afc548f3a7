"""Database model. The `messages` table is the outbox *and* the schedule: Celery only moves rows.

Status, kind, channel and recipient columns are typed as their enums (stored as their string
values, so the schema is plain VARCHAR); code compares and assigns members, never `.value`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .db import AnyText, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _enum(kind: type[enum.StrEnum], length: int) -> Enum:
    """A string column holding an enum's values; no CHECK constraint (a new value needs no migration)."""
    return Enum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class SessionStatus(enum.StrEnum):
    scheduled = "scheduled"  # registered, infusion not yet done
    completed = "completed"  # patient discharged; end-anchored steps are scheduled
    cancelled = "cancelled"  # nothing more is sent for it


class MessageStatus(enum.StrEnum):
    scheduled = "scheduled"  # waiting for next_attempt_at (first try or a retry)
    sending = "sending"  # claimed by one worker; the provider call is under way
    sent = "sent"  # the provider accepted it (provider_id set)
    delivered = "delivered"  # the provider confirmed delivery to the handset/mailbox
    failed = "failed"  # permanent failure; `error` holds the provider's reason
    cancelled = "cancelled"  # the session was cancelled or the step no longer applies
    expired = "expired"  # due too long ago to be useful (expires_after)
    skipped = "skipped"  # no consent / opted out / no address / already answered

    @classmethod
    def pending(cls) -> tuple[MessageStatus, ...]:
        return (cls.scheduled, cls.sending)

    @classmethod
    def final(cls) -> tuple[MessageStatus, ...]:
        return (cls.sent, cls.delivered, cls.failed, cls.cancelled, cls.expired, cls.skipped)


class MessageKind(enum.StrEnum):
    step = "step"  # a protocol step (one step x recipient x channel)
    followup = "followup"  # a follow-on of a step: next PHQ-9 question, clarification
    reply = "reply"  # an automatic answer to an inbound message (HELP, crisis)
    alert = "alert"  # an alert to an on-call contact


class CheckinStatus(enum.StrEnum):
    open = "open"  # waiting for a valid reply
    escalated = "escalated"  # no valid reply in time; flag raised; a late reply still closes it
    answered = "answered"  # a valid reply was recorded
    expired = "expired"  # closed unanswered (partial PHQ-9 answers kept)


class FlagKind(enum.StrEnum):
    crisis = "crisis"
    low_mood = "low_mood"
    ride_unconfirmed = "ride_unconfirmed"
    not_home = "not_home"
    delivery_failed = "delivery_failed"
    unmatched = "unmatched"
    unparsed = "unparsed"


class ChannelName(enum.StrEnum):
    sms = "sms"  # Twilio (or the console outbox)
    email = "email"  # SMTP (or the console outbox)


class Recipient(enum.StrEnum):
    patient = "patient"  # the patient of the session
    driver = "driver"  # the person driving them home: logistics only, never anything clinical
    oncall = "oncall"  # an on-call clinician (crisis alerts)
    sender = "sender"  # whoever texted us from an unknown number (HELP, a crisis answer)


class ReplyChannel(enum.StrEnum):
    sms = "sms"  # an inbound text
    email = "email"  # an inbound email (reserved)
    web = "web"  # a signed link or the PHQ-9 web form


class Expects(enum.StrEnum):
    none = "none"  # nothing to answer
    yes_no = "yes_no"  # ride home confirmed?
    home = "home"  # home safe?
    mood = "mood"  # 0-10
    phq9 = "phq9"  # the nine-item survey


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(5), default="en")
    preferred_channel: Mapped[ChannelName] = mapped_column(_enum(ChannelName, 10), default=ChannelName.sms)
    sms_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    email_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    phq9_by_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    sessions: Mapped[list[InfusionSession]] = relationship(back_populates="patient")


class SmsOptOut(Base):
    """A number that texted STOP. Keyed by number, so it covers patients and drivers alike."""

    __tablename__ = "sms_opt_outs"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(40), default="keyword")


class InfusionSession(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    scheduled_start: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[SessionStatus] = mapped_column(_enum(SessionStatus, 20), default=SessionStatus.scheduled)
    driver_name: Mapped[str | None] = mapped_column(String(200))
    driver_phone: Mapped[str | None] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="sessions")
    messages: Mapped[list[Message]] = relationship(back_populates="session")


class Message(Base):
    """One outbound message: one step x one recipient x one channel (or an auto-reply/alert)."""

    __tablename__ = "messages"
    __table_args__ = (
        # The dispatcher's only query: due rows. Flat however many rows wait in the future.
        Index("ix_messages_due", "status", "next_attempt_at"),
        Index("ix_messages_provider_id", "provider_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # session x step x recipient x channel x part; makes scheduling idempotent.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[MessageKind] = mapped_column(_enum(MessageKind, 10), default=MessageKind.step)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    step: Mapped[str | None] = mapped_column(String(64))
    part: Mapped[int] = mapped_column(Integer, default=0)
    recipient: Mapped[Recipient] = mapped_column(_enum(Recipient, 10))
    channel: Mapped[ChannelName] = mapped_column(_enum(ChannelName, 10))
    to_address: Mapped[str | None] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    # What the step expects in reply, copied from the protocol when the row is made: sending
    # (links, "already answered?") never looks the protocol up again.
    expects: Mapped[Expects] = mapped_column(_enum(Expects, 10), default=Expects.none, server_default="none")
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, 12), default=MessageStatus.scheduled)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_id: Mapped[str | None] = mapped_column(String(255))
    provider_status: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)  # as rendered at send time
    html: Mapped[str | None] = mapped_column(Text)  # email HTML part, as rendered
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    session: Mapped[InfusionSession | None] = relationship(back_populates="messages")
    patient: Mapped[Patient | None] = relationship()


class Checkin(Base):
    """A step that expects a reply, from its first send until answered, escalated or expired."""

    __tablename__ = "checkins"
    __table_args__ = (
        UniqueConstraint("session_id", "step", name="uq_checkins_session_step"),
        Index("ix_checkins_open", "status", "escalate_at"),
        Index("ix_checkins_patient", "patient_id", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    step: Mapped[str] = mapped_column(String(64))
    expects: Mapped[Expects] = mapped_column(_enum(Expects, 10))
    status: Mapped[CheckinStatus] = mapped_column(_enum(CheckinStatus, 12), default=CheckinStatus.open)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    score: Mapped[int | None] = mapped_column(Integer)  # mood 0-10, PHQ-9 total, 1/0 yes/no
    band: Mapped[str | None] = mapped_column(String(20))  # PHQ-9 severity band
    failed_parses: Mapped[int] = mapped_column(Integer, default=0)
    # PHQ-9: {"answers": [..], "channel": "sms"|"web"}
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    session: Mapped[InfusionSession] = relationship()

    @property
    def is_open(self) -> bool:
        """Still waiting for (or still accepting) an answer."""
        return self.status in (CheckinStatus.open, CheckinStatus.escalated)

    def mark_answered(self, now: datetime, score: int | None) -> None:
        self.status = CheckinStatus.answered
        self.answered_at = now
        self.score = score
        self.updated_at = now


class Reply(Base):
    """One inbound message, stored raw before anything else happens."""

    __tablename__ = "replies"
    __table_args__ = (Index("ix_replies_received", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[str | None] = mapped_column(String(64), unique=True)  # MessageSid
    channel: Mapped[ReplyChannel] = mapped_column(_enum(ReplyChannel, 10))
    from_address: Mapped[str | None] = mapped_column(String(320), index=True)
    to_address: Mapped[str | None] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(AnyText(), default="")  # raw, whatever bytes the sender sent
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"))
    step: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(40))
    score: Mapped[int | None] = mapped_column(Integer)

    flags: Mapped[list[Flag]] = relationship(back_populates="reply")


class Flag(Base):
    """Something a clinician must see; open until acknowledged."""

    __tablename__ = "flags"
    __table_args__ = (Index("ix_flags_open", "acknowledged_at", "raised_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[FlagKind] = mapped_column(_enum(FlagKind, 20))
    # Raise-once key, e.g. "not_home:session:12"; NULL where repeats are meaningful.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    step: Mapped[str | None] = mapped_column(String(64))
    reply_id: Mapped[int | None] = mapped_column(ForeignKey("replies.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    detail: Mapped[str | None] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(320))
    note: Mapped[str | None] = mapped_column(Text)

    reply: Mapped[Reply | None] = relationship(back_populates="flags")


class Clinician(Base):
    __tablename__ = "clinicians"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))  # "token:<name>", "clinician:<email>", "system"
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
