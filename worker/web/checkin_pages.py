"""Email check-in pages: signed one-click answers and the PHQ-9 web form.

Server-rendered, phone-sized, no JavaScript. A link's GET never records anything: mail
scanners open every link in a message, and eleven prefetched mood links must not record a
0/10. The page shows the choice with one button (POST) that records it. A used link, an
expired one, or a closed check-in shows a clear page and records nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..care import answers, checkins
from ..clinical import phq9
from ..core import outbox
from ..core.context import Context
from ..core.db import utcnow
from ..core.models import Checkin, CheckinStatus, Expects, Message, Patient, Reply, ReplyChannel
from ..outbound.links import LinkError, read_token
from .state import get_enqueue_urgent

router = APIRouter()

TEXT = {
    "en": {
        "safety": "This page is not monitored for emergencies. In a crisis call or text 988; "
        "call 911 if you are in immediate danger.",
        "you_chose": "You chose:",
        "confirm": "Send my answer",
        "why_confirm": "Nothing is recorded until you press the button.",
        "thanks": "Thank you. Your answer went to your care team.",
        "thanks_title": "Thank you",
        "used": "This answer was already recorded. Thank you.",
        "used_title": "Already answered",
        "expired": "This link has expired. If you want to talk to us, call the clinic.",
        "expired_title": "Link expired",
        "invalid": "This link is not valid. Please use the link from your most recent message.",
        "invalid_title": "Link not valid",
        "closed": "This check-in is closed. If you want to talk to us, call the clinic.",
        "closed_title": "Check-in closed",
        "phq9_title": "Your check-in",
        "send": "Send my answers",
        "missing": "Please answer every question (missing: {items}).",
        "urgent_title": "Thank you",
        "urgent": "Thank you. A clinician will contact you. If you are thinking about hurting yourself, "
        "call or text 988 now, day or night, or call 911 if you are in immediate danger.",
        "yes": "Yes, I have a ride home",
        "no": "No, I need help with a ride",
        "home": "I am home safe",
        "mood": "Mood {n} out of 10",
    },
    "es": {
        "safety": "Esta página no se vigila para emergencias. En una crisis llame o envíe un mensaje de texto "
        "al 988; llame al 911 si está en peligro inmediato.",
        "you_chose": "Usted eligió:",
        "confirm": "Enviar mi respuesta",
        "why_confirm": "No se registra nada hasta que pulse el botón.",
        "thanks": "Gracias. Su respuesta llegó a su equipo de atención.",
        "thanks_title": "Gracias",
        "used": "Esta respuesta ya fue registrada. Gracias.",
        "used_title": "Ya respondida",
        "expired": "Este enlace ha vencido. Si quiere hablar con nosotros, llame a la clínica.",
        "expired_title": "Enlace vencido",
        "invalid": "Este enlace no es válido. Use el enlace de su mensaje más reciente.",
        "invalid_title": "Enlace no válido",
        "closed": "Este control está cerrado. Si quiere hablar con nosotros, llame a la clínica.",
        "closed_title": "Control cerrado",
        "phq9_title": "Su control",
        "send": "Enviar mis respuestas",
        "missing": "Por favor conteste todas las preguntas (faltan: {items}).",
        "urgent_title": "Gracias",
        "urgent": "Gracias. Un profesional clínico se comunicará con usted. Si piensa en hacerse daño, llame o "
        "envíe un mensaje de texto al 988 ahora, de día o de noche, o llame al 911 si está en peligro "
        "inmediato.",
        "yes": "Sí, tengo quien me lleve a casa",
        "no": "No, necesito ayuda para volver",
        "home": "Ya estoy en casa",
        "mood": "Ánimo {n} de 10",
    },
}


def page_environment(templates_dir: str) -> Environment:
    """The patient pages' templates; built once by the app factory."""
    return Environment(loader=FileSystemLoader(templates_dir), autoescape=True, undefined=StrictUndefined)


class Pages:
    """Renders the patient pages in the patient's language, with the clinic's name and phone."""

    def __init__(self, ctx: Context, env: Environment):
        self.ctx = ctx
        self.env = env

    def page(self, template: str, lang: str, title_key: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        settings = self.ctx.settings
        t = TEXT.get(lang, TEXT["en"])
        html = self.env.get_template(f"pages/{template}").render(
            lang=lang,
            t=t,
            title=t[title_key],
            clinic_name=settings.clinic_name,
            clinic_phone=settings.clinic_phone,
            **ctx,
        )
        return HTMLResponse(
            html, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    def message(self, lang: str, key: str, status: int) -> HTMLResponse:
        return self.page("message.html", lang, f"{key}_title", status, message=TEXT.get(lang, TEXT["en"])[key])


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


Resolved = tuple[dict[str, Any], Checkin, str, None] | tuple[None, None, str, HTMLResponse]


def _resolve(pages: Pages, db: Session, token: str) -> Resolved:
    """(token data, open check-in, language, None), or (None, None, language, the page to show instead)."""
    try:
        data = read_token(pages.ctx.settings, token)
    except LinkError as exc:
        return None, None, "en", pages.message("en", exc.reason, 410 if exc.reason == "expired" else 404)
    msg = db.get(Message, data["m"])
    if msg is None or msg.session_id is None:
        return None, None, "en", pages.message("en", "invalid", 404)
    lang = msg.patient.language if msg.patient else "en"
    checkin = db.scalar(select(Checkin).where(Checkin.session_id == msg.session_id, Checkin.step == msg.step))
    if checkin is None:
        return None, None, lang, pages.message(lang, "closed", 410)
    if checkin.status == CheckinStatus.answered:
        return None, None, lang, pages.message(lang, "used", 409)
    if checkin.status == CheckinStatus.expired or checkin.closes_at <= utcnow():
        return None, None, lang, pages.message(lang, "closed", 410)
    return data, checkin, lang, None


def _value(checkin: Checkin, answer: Any) -> Any | None:
    if checkin.expects == Expects.yes_no and answer in ("yes", "no"):
        return answer == "yes"
    if checkin.expects == Expects.home and answer == "home":
        return True
    if (
        checkin.expects == Expects.mood
        and isinstance(answer, int)
        and not isinstance(answer, bool)
        and 0 <= answer <= 10
    ):
        return answer
    return None


def _label(lang: str, answer: Any) -> str:
    t = TEXT.get(lang, TEXT["en"])
    return t["mood"].format(n=answer) if isinstance(answer, int) else t.get(str(answer), str(answer))


def _web_reply(db: Session, checkin: Checkin, body: str, now: datetime) -> Reply:
    patient = db.get(Patient, checkin.patient_id)
    reply = Reply(
        channel=ReplyChannel.web,
        from_address=patient.email if patient else None,
        body=body,
        params={},
        received_at=now,
        processed_at=now,
        patient_id=checkin.patient_id,
        session_id=checkin.session_id,
        checkin_id=checkin.id,
        step=checkin.step,
    )
    db.add(reply)
    db.flush()
    return reply


@router.get("/r/{token}", response_class=HTMLResponse)
def answer_page(token: str, request: Request) -> HTMLResponse:
    pages = _pages(request)
    with pages.ctx.db.scope() as db:
        data, checkin, lang, problem = _resolve(pages, db, token)
        if problem is not None:
            return problem
        assert data is not None and checkin is not None
        if _value(checkin, data.get("a")) is None:
            return pages.message(lang, "invalid", 404)
        return pages.page("confirm.html", lang, "thanks_title", answer_label=_label(lang, data["a"]))


@router.post("/r/{token}", response_class=HTMLResponse)
def answer_record(token: str, request: Request) -> HTMLResponse:
    pages = _pages(request)
    now = utcnow()
    with pages.ctx.db.scope() as db:
        data, checkin, lang, problem = _resolve(pages, db, token)
        if problem is not None:
            return problem
        assert data is not None and checkin is not None
        value = _value(checkin, data.get("a"))
        if value is None:
            return pages.message(lang, "invalid", 404)
        if not checkins.claim(db, checkin, now):
            return pages.message(lang, "used", 409)
        reply = _web_reply(db, checkin, f"link: {data['a']}", now)
        reply.outcome = answers.record_answer(pages.ctx, db, checkin, reply, value, now)
    outbox.hand_over(db, get_enqueue_urgent(request))
    return pages.message(lang, "thanks", 200)


def _questions(lang: str) -> dict[str, Any]:
    key = lang if lang in phq9.ITEMS else "en"
    return {"stem": phq9.STEM[key], "questions": phq9.ITEMS[key], "answers": phq9.ANSWERS[key]}


@router.get("/phq9/{token}", response_class=HTMLResponse)
def phq9_form(token: str, request: Request) -> HTMLResponse:
    pages = _pages(request)
    with pages.ctx.db.scope() as db:
        _data, checkin, lang, problem = _resolve(pages, db, token)
        if problem is not None:
            return problem
        assert checkin is not None
        if checkin.expects != Expects.phq9:
            return pages.message(lang, "invalid", 404)
        return pages.page("phq9_form.html", lang, "phq9_title", error=None, chosen={}, **_questions(lang))


@router.post("/phq9/{token}", response_class=HTMLResponse)
async def phq9_submit(token: str, request: Request) -> HTMLResponse:
    pages = _pages(request)
    form = await request.form()
    now = utcnow()
    with pages.ctx.db.scope() as db:
        _data, checkin, lang, problem = _resolve(pages, db, token)
        if problem is not None:
            return problem
        assert checkin is not None
        if checkin.expects != Expects.phq9:
            return pages.message(lang, "invalid", 404)
        chosen: dict[int, int] = {}
        for i in range(1, 10):
            raw = form.get(f"item{i}")
            if isinstance(raw, str) and raw.strip() in ("0", "1", "2", "3"):
                chosen[i] = int(raw.strip())
        missing = [str(i) for i in range(1, 10) if i not in chosen]
        if missing:
            error = TEXT.get(lang, TEXT["en"])["missing"].format(items=", ".join(missing))
            return pages.page("phq9_form.html", lang, "phq9_title", 422, error=error, chosen=chosen, **_questions(lang))
        if not checkins.claim(db, checkin, now):
            return pages.message(lang, "used", 409)
        answered = [chosen[i] for i in range(1, 10)]
        reply = _web_reply(db, checkin, "PHQ-9 web form: " + ",".join(map(str, answered)), now)
        reply.outcome = answers.record_answer(pages.ctx, db, checkin, reply, answered, now)
        urgent = phq9.item9_positive(answered)
    outbox.hand_over(db, get_enqueue_urgent(request))
    return pages.message(lang, "urgent" if urgent else "thanks", 200)
