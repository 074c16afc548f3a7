"""Phone numbers: stored E.164; masked wherever they are logged."""

from __future__ import annotations

import phonenumbers


def to_e164(raw: str, region: str = "US") -> str:
    """Normalise to E.164 or raise ValueError with a reason."""
    try:
        num = phonenumbers.parse(str(raw), region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_possible_number(num):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def maybe_e164(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return to_e164(raw)
    except ValueError:
        return None


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "-"
    return phone[:2] + "*" * max(len(phone) - 6, 0) + phone[-4:] if len(phone) > 6 else "****"


def mask_address(addr: str | None) -> str:
    """A phone shows its last four digits; an email its domain."""
    if not addr:
        return "-"
    if "@" in addr:
        return "***@" + addr.rsplit("@", 1)[1]
    return mask_phone(addr)
