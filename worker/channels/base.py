"""The channel interface. The dispatcher knows only this; provider details stay in the channel."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Outcome(enum.StrEnum):
    sent = "sent"  # the provider accepted it; provider_id is set
    retry = "retry"  # transient (timeout, 5xx, 429, connection): try again later
    failed = "failed"  # permanent (invalid number, refused recipient): never retried
    opted_out = "opted_out"  # the provider says the recipient unsubscribed: skip and record the opt-out


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    retry_after: float | None = None  # seconds, when the provider says so

    @classmethod
    def sent(cls, provider_id: str) -> SendResult:
        return cls(Outcome.sent, provider_id=provider_id)

    @classmethod
    def retry(cls, error: str, code: str | None = None, retry_after: float | None = None) -> SendResult:
        return cls(Outcome.retry, error=error, error_code=code, retry_after=retry_after)

    @classmethod
    def failed(cls, error: str, code: str | None = None) -> SendResult:
        return cls(Outcome.failed, error=error, error_code=code)


class Reconciled(enum.StrEnum):
    found = "found"  # the provider has it: it was sent
    not_found = "not_found"  # the provider never got it: safe to send again
    unknown = "unknown"  # cannot tell: do not resend (a duplicate is worse), show a clinician


@dataclass(frozen=True)
class OutboundMessage:
    """What a channel needs to send one message; built from the outbox row at send time."""

    id: int
    channel: str  # "sms" | "email"
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    attempts: int = 1  # this attempt's number
    last_error_code: str | None = None  # how the previous attempt ended, if any
    created_at: datetime | None = None
    scheduled_for: datetime | None = None  # with created_at: the earliest it can have been sent
    headers: dict[str, str] = field(default_factory=dict)


class Pacer(Protocol):
    """The global send rate (`worker.outbound.ratelimit`), as a channel sees it."""

    rate: float

    def acquire(self) -> float:
        """Block until one more message may go; return the seconds waited."""
        ...


# (message id, candidate provider ids) -> the ids another outbox row already owns. Passed in by
# the layer that owns the database, so a channel can reconcile without reading it.
SidOwners = Callable[[int, list[str]], set[str]]


class Channel:
    """One transport. `send` never raises for provider trouble: it classifies it."""

    name: str = "base"

    def wait_turn(self) -> None:
        """Block until the global send rate allows one more message (no-op by default)."""

    def send(self, message: OutboundMessage) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    def reconcile(self, message: OutboundMessage) -> tuple[Reconciled, str | None]:
        """After a worker died mid-send: did the provider get this message? (status, provider id)."""
        return Reconciled.unknown, None
