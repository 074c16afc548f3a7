"""Rows left in `sending` by a dead worker, reconciled with the provider.

After SENDING_TIMEOUT a row still in `sending` lost its worker. The channel is asked whether
the provider got it: found -> `sent`; surely not -> `scheduled` again; cannot tell (SMTP) ->
`failed` with a flag for a clinician, because a duplicate clinical message is worse than one a
human re-sends. A row is changed only if nobody moved it since it was read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from ..channels import Reconciled, SendResult
from ..core.models import Message, MessageStatus
from .dispatch import mark_failed, outbound_message, record_result
from .runtime import Outbound

log = logging.getLogger("aftercare.recovery")

BATCH = 100


def recover_stale(out: Outbound, now: datetime) -> int:
    """Reconcile rows stuck in `sending` for longer than SENDING_TIMEOUT. Returns how many."""
    cutoff = now - timedelta(seconds=out.ctx.settings.sending_timeout)
    database = out.ctx.db
    with database.scope() as db:
        stale = list(
            db.scalars(
                select(Message).where(Message.status == MessageStatus.sending, Message.claimed_at < cutoff).limit(BATCH)
            )
        )
    done = 0
    for row in stale:
        state, provider_id = out.channels[row.channel].reconcile(outbound_message(row))
        with database.scope() as db:
            # Act only if nobody else moved it since we looked.
            res = db.execute(
                update(Message)
                .where(
                    Message.id == row.id, Message.status == MessageStatus.sending, Message.claimed_at == row.claimed_at
                )
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                continue
            msg = db.get(Message, row.id)
            assert msg is not None
            if state == Reconciled.found:
                record_result(out.ctx, db, msg, SendResult.sent(provider_id or ""), now)
            elif state == Reconciled.not_found:
                msg.status = MessageStatus.scheduled
                msg.next_attempt_at = now
                msg.error = "worker died before the provider got it; resending"
            else:
                mark_failed(
                    out.ctx,
                    db,
                    msg,
                    now,
                    "worker died mid-send and the provider cannot say whether it was "
                    "sent; not resent to avoid a duplicate",
                )
            done += 1
            log.warning("message %s was stuck in sending: %s", row.id, state)
    return done
