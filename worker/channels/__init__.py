"""Channels by name. Twilio / SMTP when configured, the console outbox otherwise."""

from __future__ import annotations

from .base import Channel, OutboundMessage, Outcome, Reconciled, SendResult
from .console import ConsoleChannel

__all__ = ["Channel", "OutboundMessage", "Outcome", "Reconciled", "SendResult", "ConsoleChannel",
           "build_channels"]


def build_channels(settings=None) -> dict[str, Channel]:
    from ..config import get_settings

    settings = settings or get_settings()
    channels: dict[str, Channel] = {}
    if settings.twilio_enabled:
        from .sms import TwilioSmsChannel

        channels["sms"] = TwilioSmsChannel.from_settings(settings)
    else:
        channels["sms"] = ConsoleChannel("sms")
    if settings.smtp_url:
        from .email import SmtpEmailChannel

        channels["email"] = SmtpEmailChannel.from_settings(settings)
    else:
        channels["email"] = ConsoleChannel("email")
    return channels


_CACHE: dict[int, dict[str, Channel]] = {}


def get_channels(settings=None) -> dict[str, Channel]:
    """Channels for these settings, built once per process (they hold HTTP/SMTP clients)."""
    from ..config import get_settings

    settings = settings or get_settings()
    key = id(settings)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = build_channels(settings)
    return _CACHE[key]


def reset_channels() -> None:
    """Forget built channels (settings changed)."""
    _CACHE.clear()
