"""Celery tasks: ids in, `acks_late`, plain functions underneath (tested without Celery).

acks_late: a task whose worker dies is delivered again; the functions are idempotent (claims
are conditional UPDATEs), so a redelivery never sends twice.
"""

from __future__ import annotations

import logging

from ..core.db import utcnow
from ..outbound import dispatch
from . import periodic
from .celery_app import app, enqueue_send, enqueue_urgent, runtime

log = logging.getLogger("aftercare.tasks")


@app.task(name="aftercare.dispatch_due", acks_late=True, ignore_result=True)
def dispatch_due() -> None:
    sent = dispatch.dispatch_due(runtime(app), utcnow(), enqueue=enqueue_send)
    if sent:
        log.debug("%s due messages handed to workers", sent)


@app.task(name="aftercare.checkin_timers", acks_late=True, ignore_result=True)
def checkin_timers() -> None:
    periodic.checkin_timers(runtime(app).ctx, utcnow())


@app.task(name="aftercare.pending_replies", acks_late=True, ignore_result=True)
def pending_replies() -> None:
    periodic.pending_replies(runtime(app).ctx, utcnow(), enqueue_urgent)


@app.task(name="aftercare.stale_sends", acks_late=True, ignore_result=True)
def stale_sends() -> None:
    periodic.stale_sends(runtime(app), utcnow())


@app.task(name="aftercare.send_message", acks_late=True, ignore_result=True)
def send_message(message_id: int, attempts: int) -> str:
    return dispatch.send_message(runtime(app), message_id, attempts, utcnow(), enqueue_urgent)
