"""What a message says: its template rendered with the patient's, session's and clinic's data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from . import phq9
from .config import Settings
from .links import links_for
from .models import InfusionSession, Message, Patient
from .protocol import get_protocol
from .templating import render_email, render_sms


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: Optional[str] = None
    html: Optional[str] = None


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
    return {"clinic_name": settings.clinic_name, "clinic_phone": settings.clinic_phone,
            "base_url": settings.public_base_url}


def message_context(db: Session, msg: Message, settings: Settings) -> tuple[str, dict[str, Any]]:
    """(language, context) for a message row."""
    ctx = base_context(settings)
    patient: Optional[Patient] = msg.patient
    session: Optional[InfusionSession] = msg.session
    lang = (patient.language if patient else None) or "en"
    if patient is not None:
        ctx["first_name"] = patient.first_name
    if session is not None:
        tz = patient.timezone if patient else settings.clinic_timezone
        ctx["start_local"] = local_time_text(session.scheduled_start, tz, lang)
        ctx["start_date"] = local_date_text(session.scheduled_start, tz, lang)
        ctx["driver_name"] = session.driver_name
    step = get_protocol(settings).step(msg.step or "") if msg.step else None
    ctx["links"] = links_for(settings, msg.id, step.expects if step else "none")
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
    if msg.template == "phq9" and msg.channel == "sms" and msg.kind == "step" and msg.patient is not None \
            and msg.patient.phq9_by_sms:
        return "phq9_intro"
    return msg.template


def render_message(db: Session, msg: Message, settings: Settings) -> Rendered:
    lang, ctx = message_context(db, msg, settings)
    template = template_for(msg)
    if msg.channel == "sms":
        return Rendered(body=render_sms(template, lang, ctx, settings.templates_dir))
    email = render_email(template, lang, ctx, settings.templates_dir)
    return Rendered(body=email.text, subject=email.subject, html=email.html)
