"""What a message says: its template rendered with the patient's, session's and clinic's data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..clinical import phq9
from ..core.config import Settings
from ..core.models import ChannelName, InfusionSession, Message, MessageKind, Patient
from .links import links_for
from .templating import MessageTemplates


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None


_ES_DAYS = ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"]
_ES_MONTHS = ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"]


def local_time_text(when: datetime, tz: str, lang: str = "en") -> str:
    """The visit's time as the patient reads it: their zone, their language."""
    local = when.astimezone(ZoneInfo(tz))
    if lang == "es":
        return f"{_ES_DAYS[local.weekday()]} {local.day} de {_ES_MONTHS[local.month - 1]} a las {local:%H:%M}"
    return f"{local:%a %b} {local.day} at {local:%I:%M %p}".replace(" 0", " ")


def local_date_text(when: datetime, tz: str, lang: str = "en") -> str:
    local = when.astimezone(ZoneInfo(tz))
    return f"{local.day} de {_ES_MONTHS[local.month - 1]}" if lang == "es" else f"{local:%b} {local.day}"


def base_context(settings: Settings) -> dict[str, Any]:
    return {
        "clinic_name": settings.clinic_name,
        "clinic_phone": settings.clinic_phone,
        "base_url": settings.public_base_url,
    }


def message_context(settings: Settings, msg: Message) -> tuple[str, dict[str, Any]]:
    """(language, context) for a message row (its patient and session loaded with it)."""
    ctx = base_context(settings)
    patient: Patient | None = msg.patient
    session: InfusionSession | None = msg.session
    lang = (patient.language if patient else None) or "en"
    if patient is not None:
        ctx["first_name"] = patient.first_name
    if session is not None:
        tz = patient.timezone if patient else settings.clinic_timezone
        ctx["start_local"] = local_time_text(session.scheduled_start, tz, lang)
        ctx["start_date"] = local_date_text(session.scheduled_start, tz, lang)
        ctx["driver_name"] = session.driver_name
    ctx["links"] = links_for(settings, msg.id, msg.expects)
    ctx.update(msg.context or {})
    if msg.template.startswith(("phq9", "clarify_phq9")):
        lang_key = lang if lang in phq9.ITEMS else "en"
        ctx["stem"] = phq9.STEM[lang_key]
        ctx["answers"] = phq9.ANSWERS[lang_key]
        if "item" in ctx:
            ctx["number"] = ctx["item"]
            ctx["question"] = phq9.ITEMS[lang_key][int(ctx["item"]) - 1]
    return lang, ctx


def template_for(msg: Message) -> str:
    """A patient who chose the PHQ-9 by text gets the intro of the SMS survey, not the link."""
    if (
        msg.template == "phq9"
        and msg.channel == ChannelName.sms
        and msg.kind == MessageKind.step
        and msg.patient is not None
        and msg.patient.phq9_by_sms
    ):
        return "phq9_intro"
    return msg.template


def render_message(templates: MessageTemplates, settings: Settings, msg: Message) -> Rendered:
    lang, ctx = message_context(settings, msg)
    template = template_for(msg)
    if msg.channel == ChannelName.sms:
        return Rendered(body=templates.sms(template, lang, ctx))
    email = templates.email(template, lang, ctx)
    return Rendered(body=email.text, subject=email.subject, html=email.html)
