"""Celery tasks: thin wrappers over plain functions (tested without Celery).

acks_late: a task whose worker dies is delivered again; the functions are idempotent
(claims are conditional UPDATEs), so a redelivery never sends twice.
"""

from __future__ import annotations

import logging

from . import dispatch
from .celery_app import app
from .db import utcnow

log = logging.getLogger("aftercare.tasks")


@app.task(name="aftercare.dispatch_tick", acks_late=True, ignore_result=True)
def dispatch_tick() -> None:
    result = dispatch.tick(utcnow(), enqueue=enqueue_send)
    if result.enqueued or result.recovered or result.timers:
        log.info("tick: enqueued %s, recovered %s, timers %s", result.enqueued, result.recovered, result.timers)


@app.task(name="aftercare.send_message", acks_late=True, ignore_result=True)
def send_message(message_id: int, attempts: int) -> str:
    return dispatch.send_message(message_id, attempts, utcnow())


def enqueue_send(message_id: int, attempts: int) -> None:
    send_message.delay(message_id, attempts)
