"""Signed, expiring, single-use links for email check-ins (itsdangerous).

A link carries the message it came in and the answer it records; single use is enforced by
the check-in it answers (an answered check-in records nothing more), not by the token.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..core.config import Settings
from ..core.models import Expects

LINK_MAX_AGE = 7 * 86400  # seconds


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key(), salt="aftercare.checkin-link")


def make_token(settings: Settings, message_id: int, answer: Any | None = None) -> str:
    payload: dict[str, Any] = {"m": message_id}
    if answer is not None:
        payload["a"] = answer
    return _serializer(settings).dumps(payload)


class LinkError(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "expired" | "invalid"


def read_token(settings: Settings, token: str, max_age: int = LINK_MAX_AGE) -> dict[str, Any]:
    try:
        data = _serializer(settings).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkError("expired") from None
    except BadSignature:
        raise LinkError("invalid") from None
    if not isinstance(data, dict) or not isinstance(data.get("m"), int):
        raise LinkError("invalid")
    return data


def links_for(settings: Settings, message_id: int, expects: Expects) -> dict[str, Any]:
    """The links a check-in email (or the PHQ-9 SMS) carries, by what the step expects."""
    base = settings.public_base_url
    if expects == Expects.yes_no:
        return {
            "yes": f"{base}/r/{make_token(settings, message_id, 'yes')}",
            "no": f"{base}/r/{make_token(settings, message_id, 'no')}",
        }
    if expects == Expects.home:
        return {"home": f"{base}/r/{make_token(settings, message_id, 'home')}"}
    if expects == Expects.mood:
        return {"mood": [f"{base}/r/{make_token(settings, message_id, n)}" for n in range(11)]}
    if expects == Expects.phq9:
        return {"phq9": f"{base}/phq9/{make_token(settings, message_id)}"}
    return {}
