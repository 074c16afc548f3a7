"""`aftercare reply PHONE TEXT`: post an inbound SMS to the running app, signed as Twilio signs it."""

from __future__ import annotations

import secrets

import httpx
from twilio.request_validator import RequestValidator

from ..core.config import Settings
from ..core.phones import to_e164


def signed_inbound(
    settings: Settings, phone: str, text: str, base_url: str | None = None
) -> tuple[str, dict[str, str], dict[str, str]]:
    """(url to post to, form params, headers) for one inbound SMS."""
    try:
        sender = to_e164(phone)
    except ValueError as exc:
        raise ValueError(f"PHONE: {exc}") from None
    params = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
        "From": sender,
        "To": settings.twilio_from_number or "+12125550100",
        "Body": text,
        "NumMedia": "0",
        "NumSegments": "1",
    }
    # Twilio signs the public URL it called; the app checks against PUBLIC_BASE_URL + path.
    signed_url = settings.public_base_url + "/webhooks/twilio/sms"
    headers = {}
    if settings.twilio_auth_token:
        headers["X-Twilio-Signature"] = RequestValidator(settings.twilio_auth_token).compute_signature(
            signed_url, params
        )
    post_url = (base_url.rstrip("/") + "/webhooks/twilio/sms") if base_url else signed_url
    return post_url, params, headers


def post_inbound_sms(settings: Settings, phone: str, text: str, base_url: str | None = None) -> tuple[int, str]:
    url, params, headers = signed_inbound(settings, phone, text, base_url)
    r = httpx.post(url, data=params, headers=headers, timeout=10)
    return r.status_code, r.text
