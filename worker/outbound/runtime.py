"""The sending side of a process's composition root: channels and templates, built once.

`build_outbound(ctx)` is called by the CLI, the app factory and the Celery worker start; the
dispatcher receives the result. Nothing here is cached at module level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlalchemy import select

from ..channels import Channel, build_channels
from ..core.context import Context
from ..core.db import Database
from ..core.models import Message
from .ratelimit import RateLimiter, sms_limiter
from .templating import MessageTemplates


@dataclass(frozen=True, eq=False)
class Outbound:
    ctx: Context
    channels: Mapping[str, Channel]
    templates: MessageTemplates
    limiter: RateLimiter | None = None

    def with_channels(self, channels: Mapping[str, Channel]) -> Outbound:
        """The same runtime sending through other channels (tests, benchmarks, the demo)."""
        return replace(self, channels=channels)


def sids_owned_elsewhere(database: Database, message_id: int, sids: list[str]) -> set[str]:
    """Provider ids among `sids` that another outbox row already owns (for reconciling a send)."""
    with database.scope() as db:
        return set(
            db.scalars(select(Message.provider_id).where(Message.provider_id.in_(sids), Message.id != message_id))
        )


def build_outbound(ctx: Context, channels: Mapping[str, Channel] | None = None) -> Outbound:
    settings = ctx.settings
    limiter = sms_limiter(settings) if settings.twilio_enabled else None
    if channels is None:
        channels = build_channels(
            settings, limiter, owned_elsewhere=lambda mid, sids: sids_owned_elsewhere(ctx.db, mid, sids)
        )
    return Outbound(ctx=ctx, channels=channels, templates=MessageTemplates(settings.templates_dir), limiter=limiter)
