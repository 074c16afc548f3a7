"""What the app factory keeps on `app.state`, read by every route the same way."""

from __future__ import annotations

from fastapi import Request

from ..core.context import Context
from ..core.outbox import EnqueueUrgent


def get_ctx(request: Request) -> Context:
    """The process's context, built once by the app factory (also a FastAPI dependency)."""
    ctx: Context = request.app.state.ctx
    return ctx


def get_enqueue_urgent(request: Request) -> EnqueueUrgent:
    """Where committed urgent rows go (the Celery app, or a test's recorder)."""
    enqueue: EnqueueUrgent = request.app.state.enqueue_urgent
    return enqueue
