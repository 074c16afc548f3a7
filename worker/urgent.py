"""Messages that must not wait for the next dispatch tick (crisis alerts, the next PHQ-9 question).

`send_soon(db, message_id)` notes the id on the session; once that transaction commits, the
send task is enqueued at once on the `urgent` queue. If the broker cannot take it, nothing is
lost: the row is due now, and the next tick enqueues it.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("aftercare.urgent")
_KEY = "aftercare.send_soon"


def send_soon(db: Session, message_id: int) -> None:
    db.info.setdefault(_KEY, []).append(message_id)


def enqueue(message_id: int) -> None:
    """Hand one message to the workers now (replaced in tests that run no worker)."""
    from .tasks import send_message

    send_message.apply_async((message_id, 0), queue="urgent")


@event.listens_for(Session, "after_commit")
def _after_commit(db: Session) -> None:
    ids = db.info.pop(_KEY, [])
    for message_id in ids:
        try:
            enqueue(message_id)
        except Exception as exc:  # noqa: BLE001 - the tick will send it
            log.warning("could not enqueue urgent message %s (%s); the next tick sends it", message_id,
                        type(exc).__name__)


@event.listens_for(Session, "after_rollback")
def _after_rollback(db: Session) -> None:
    db.info.pop(_KEY, None)
