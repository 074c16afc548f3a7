"""The periodic jobs as plain functions (the beat schedule runs each as a small task).

Each takes the process's runtime and `now`; each is safe to run twice at once (two beats, a
redelivered task): claims are conditional UPDATEs and timers fire once per dedupe key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..care import checkins
from ..core import outbox
from ..core.context import Context
from ..inbound import pipeline
from ..outbound import dispatch, recovery
from ..outbound.runtime import Outbound


def checkin_timers(ctx: Context, now: datetime) -> int:
    """Escalate check-ins whose time ran out; close the ones past their window."""
    with ctx.db.scope() as db:
        return checkins.run_timers(db, now)


def pending_replies(ctx: Context, now: datetime, enqueue_urgent: outbox.EnqueueUrgent | None = None) -> int:
    """Read replies that were stored but never processed (a crash between the two)."""
    return pipeline.process_pending(ctx, now, enqueue_urgent=enqueue_urgent)


def stale_sends(out: Outbound, now: datetime) -> int:
    """Reconcile rows a dead worker left in `sending`."""
    return recovery.recover_stale(out, now)


@dataclass
class PassResult:
    recovered: int = 0
    timers: int = 0
    replies: int = 0
    sent: int = 0


def run_inline(
    out: Outbound, now: datetime, limit: int = dispatch.TICK_BATCH, enqueue_urgent: outbox.EnqueueUrgent | None = None
) -> PassResult:
    """Every periodic job once, sending due rows in this process (tests, benchmarks, one-off runs).

    Rows the pass queues for at once (the first PHQ-9 question after its intro) go to
    `enqueue_urgent`; without it the next pass sends them.
    """
    return PassResult(
        recovered=stale_sends(out, now),
        timers=checkin_timers(out.ctx, now),
        replies=pending_replies(out.ctx, now, enqueue_urgent),
        sent=dispatch.dispatch_inline(out, now, limit, enqueue_urgent),
    )
