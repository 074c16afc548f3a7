"""Crisis escalation: a flag, an answer with 988/911, and the on-call contacts alerted at once."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from ..core import outbox
from ..core.context import Context
from ..core.models import ChannelName, FlagKind, MessageKind, Recipient, Reply
from ..core.phones import maybe_e164
from . import flags

log = logging.getLogger("aftercare.escalation")


def raise_crisis(
    ctx: Context,
    db: Session,
    now: datetime,
    *,
    reply: Reply | None,
    patient_id: int | None,
    session_id: int | None,
    step: str | None,
    detail: str,
    key: str,
    reply_to: str | None = None,
) -> None:
    """Flag `crisis`, answer the sender with 988/911 and the clinic's phone, alert on-call at once.

    Every row is queued (sent right after the caller's commit, not at the next dispatch pass).
    """
    settings = ctx.settings
    flag = flags.raise_flag(
        db,
        FlagKind.crisis,
        now,
        patient_id=patient_id,
        session_id=session_id,
        step=step,
        reply_id=reply.id if reply else None,
        detail=detail,
        dedupe_key=key,
    )
    sender = Recipient.patient if patient_id else Recipient.sender
    if reply_to:
        # urgent: goes even to a number that opted out -- it answers a message they just sent
        outbox.queue(
            db,
            key=outbox.crisis_reply_key(key),
            kind=MessageKind.reply,
            template="crisis_reply",
            channel=ChannelName.sms,
            to=reply_to,
            now=now,
            patient_id=patient_id,
            session_id=session_id,
            step=step,
            recipient=sender,
            context={"urgent": True},
        )
    flag_url = f"{settings.public_base_url}/flags/{flag.id}"
    contacts = ((ChannelName.sms, settings.oncall_sms_list), (ChannelName.email, settings.oncall_email_list))
    for channel, addresses in contacts:
        for n, contact in enumerate(addresses):
            outbox.queue(
                db,
                key=outbox.oncall_key(key, channel, n),
                kind=MessageKind.alert,
                template="oncall_alert",
                channel=channel,
                to=maybe_e164(contact) if channel == ChannelName.sms else contact,
                now=now,
                recipient=Recipient.oncall,
                context={"flag_url": flag_url, "urgent": True},
            )
    log.warning(
        "crisis flag %s raised; %s on-call alerts queued",
        flag.id,
        len(settings.oncall_sms_list) + len(settings.oncall_email_list),
    )
