"""Twilio webhooks: inbound SMS and delivery status callbacks.

Both answer 403 unless X-Twilio-Signature is valid for PUBLIC_BASE_URL + path (+ query),
whenever TWILIO_AUTH_TOKEN is set. The inbound text is stored, read, committed -- and only then
are the urgent rows it queued (988 answer, on-call alerts) handed to the workers. The URL is
rebuilt from PUBLIC_BASE_URL, never from the request: behind a TLS-terminating proxy the app
sees http://internal:8000, Twilio signed https://clinic.example.org.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from ..core.context import Context
from ..core.db import utcnow
from ..core.outbox import EnqueueUrgent
from ..inbound import pipeline, store
from ..outbound import delivery
from .state import get_ctx, get_enqueue_urgent

router = APIRouter(prefix="/webhooks/twilio")
log = logging.getLogger("aftercare.webhooks")
MAX_FORM_BYTES = 4 * 1024 * 1024  # far above Twilio's 1,600-char bodies; bigger is not Twilio


def public_url(request: Request) -> str:
    url = get_ctx(request).settings.public_base_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


async def signed_form(request: Request) -> tuple[dict[str, str] | None, Response | None]:
    """The POST params if the request is acceptable, else the response to give."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return None, _error(413, "request too large")
    try:
        form = await request.form(max_part_size=MAX_FORM_BYTES)
    except Exception:  # noqa: BLE001 - a body that is not a form is the sender's fault
        return None, _error(400, "body: not form-encoded")
    params: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            return None, _error(400, f"{key}: file uploads are not accepted")
        params[key] = value
    token = get_ctx(request).settings.twilio_auth_token
    if token:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not RequestValidator(token).validate(public_url(request), params, signature):
            log.warning("rejected %s: bad or missing X-Twilio-Signature", request.url.path)
            return None, _error(403, "X-Twilio-Signature: invalid")
    return params, None


def _error(status: int, message: str) -> Response:
    return JSONResponse(
        {"error": message, "field": message.split(":")[0] if ":" in message else None}, status_code=status
    )


def twiml() -> Response:
    """An empty TwiML answer: auto-replies go through the outbox (tracked, rate-limited)."""
    return Response('<?xml version="1.0" encoding="UTF-8"?><Response></Response>', media_type="application/xml")


@router.post("/sms")
async def inbound_sms(request: Request) -> Response:
    params, problem = await signed_form(request)
    if params is None:
        return problem or _error(400, "body: not acceptable")
    for field in ("MessageSid", "From"):
        if not params.get(field):
            return _error(400, f"{field}: required")
    # Database work off the event loop, so slow commits do not hold up other requests.
    return await run_in_threadpool(_inbound, get_ctx(request), get_enqueue_urgent(request), params)


def _inbound(ctx: Context, enqueue_urgent: EnqueueUrgent, params: dict[str, str]) -> Response:
    now = utcnow()
    # Stored first, in its own transaction; a Twilio retry of the same MessageSid is stored once.
    reply_id, is_new = store.store_inbound_sms(ctx.db, params, now)
    if not is_new:
        return twiml()
    try:
        pipeline.process(ctx, reply_id, now, enqueue_urgent)
    except Exception:  # the reply is stored; the periodic pass processes it again
        log.exception("reply %s stored but processing failed; it will be retried", reply_id)
    return twiml()


@router.post("/status")
async def status_callback(request: Request) -> Response:
    params, problem = await signed_form(request)
    if params is None:
        return problem or _error(400, "body: not acceptable")
    if not params.get("MessageSid") or not params.get("MessageStatus"):
        return _error(400, "MessageSid: and MessageStatus are required")
    await run_in_threadpool(delivery.apply_status_callback, get_ctx(request), params, utcnow())
    return Response(status_code=200)
