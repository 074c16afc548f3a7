"""Inbound SMS for tests, signed with the SDK's RequestValidator exactly as Twilio signs them."""

from __future__ import annotations

import itertools

from twilio.request_validator import RequestValidator

AUTH_TOKEN = "test-twilio-auth-token"
PUBLIC = "https://aftercare.example.org"
_sids = itertools.count(1)


def sms_params(sender: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid or f"SMin{next(_sids):030d}", "AccountSid": "AC" + "1" * 32, "From": sender,
            "To": "+12125550100", "Body": body, "NumMedia": "0", "NumSegments": "1", **extra}


def signature(params: dict[str, str], path: str = "/webhooks/twilio/sms", token: str = AUTH_TOKEN,
              base: str = PUBLIC) -> str:
    return RequestValidator(token).compute_signature(base + path, params)


def post_sms(client, sender: str, body: str, sid: str | None = None, signed: bool = True, **extra: str):
    params = sms_params(sender, body, sid, **extra)
    headers = {"X-Twilio-Signature": signature(params)} if signed else {}
    return client.post("/webhooks/twilio/sms", data=params, headers=headers)
