"""Transports only: one small class per provider, no database. Twilio / SMTP when configured,
the console outbox otherwise. Provider errors are classified inside each channel."""

from __future__ import annotations

from ..core.config import Settings
from .base import Channel, OutboundMessage, Outcome, Pacer, Reconciled, SendResult, SidOwners
from .console import ConsoleChannel
from .smtp_email import SmtpEmailChannel
from .twilio_sms import TwilioSmsChannel

__all__ = [
    "Channel",
    "ConsoleChannel",
    "OutboundMessage",
    "Outcome",
    "Pacer",
    "Reconciled",
    "SendResult",
    "SidOwners",
    "SmtpEmailChannel",
    "TwilioSmsChannel",
    "build_channels",
]


def build_channels(
    settings: Settings, sms_pacer: Pacer | None = None, owned_elsewhere: SidOwners | None = None
) -> dict[str, Channel]:
    """The channels for these settings, built once per process (they hold HTTP/SMTP clients)."""
    channels: dict[str, Channel] = {}
    if settings.twilio_enabled:
        channels["sms"] = TwilioSmsChannel.from_settings(settings, sms_pacer, owned_elsewhere)
    else:
        channels["sms"] = ConsoleChannel("sms")
    if settings.smtp_url:
        channels["email"] = SmtpEmailChannel.from_settings(settings)
    else:
        channels["email"] = ConsoleChannel("email")
    return channels
