"""The Celery app. Redis in production; kombu's SQLAlchemy transport on a SQLite file when
BROKER_URL is unset, so `aftercare run` needs no server.

Tasks carry ids only; the database row is the schedule, so nothing here uses ETA/countdown.
The app is configured by the process's composition root (`configure`), which also attaches
the runtime the tasks use; a worker started as `celery -A worker.jobs.celery_app` builds it
from the environment on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from ..core.config import Settings
from ..core.context import build_context
from ..outbound.runtime import Outbound, build_outbound

log = logging.getLogger("aftercare.jobs")

app = Celery("aftercare", include=["worker.jobs.tasks"])
_RUNTIME_ATTR = "aftercare_runtime"
_SETTINGS_ATTR = "aftercare_settings"


def periodic(task: str, every: float) -> dict[str, Any]:
    # A pass that could not run in time is pointless: the next one does it.
    return {"task": task, "schedule": every, "options": {"expires": max(every * 3, 30)}}


def configure(celery: Celery, settings: Settings, runtime: Outbound | None = None) -> None:
    """Point the app at the broker and set the beat schedule; attach the runtime for tasks.

    Without `runtime`, each worker process builds its own from `settings` on first use -- after
    the fork, so no database connection or HTTP client is shared with the parent.
    """
    broker = settings.effective_broker_url
    every = settings.dispatch_interval
    celery.conf.update(
        broker_url=broker,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        # Redis: a task not acked within this is redelivered (a dead worker's send; it is idempotent).
        broker_transport_options={"visibility_timeout": 3600} if broker.startswith(("redis://", "rediss://")) else {},
        beat_schedule={
            "send-due": periodic("aftercare.dispatch_due", every),
            "checkin-timers": periodic("aftercare.checkin_timers", every),
            "pending-replies": periodic("aftercare.pending_replies", every),
            "stale-sends": periodic("aftercare.stale_sends", every),
        },
        beat_schedule_filename=str(settings.data_dir / "aftercare-beat-schedule"),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # the console outbox prints to stdout, not as log lines
        # Every worker consumes both; urgent sends (crisis alerts, next PHQ-9 question) are not
        # stuck behind a backlog of routine ones.
        task_queues=(Queue("urgent"), Queue("celery")),
        task_default_queue="celery",
    )
    setattr(celery, _SETTINGS_ATTR, settings)
    if runtime is not None:
        setattr(celery, _RUNTIME_ATTR, runtime)


def detach(celery: Celery) -> None:
    """Forget the settings and runtime `configure` attached (a test's worker stopped)."""
    for attr in (_RUNTIME_ATTR, _SETTINGS_ATTR):
        if hasattr(celery, attr):
            delattr(celery, attr)


def runtime(celery: Celery) -> Outbound:
    """The runtime attached by `configure`, else one built once in this process from its settings
    (or from the environment, for a worker started with plain `celery -A worker.jobs.celery_app`)."""
    out: Outbound | None = getattr(celery, _RUNTIME_ATTR, None)
    if out is None:
        out = build_outbound(build_context(getattr(celery, _SETTINGS_ATTR, None)))
        setattr(celery, _RUNTIME_ATTR, out)
    return out


def enqueue_send(message_id: int, attempts: int) -> None:
    app.send_task("aftercare.send_message", (message_id, attempts))


def enqueue_urgent(message_ids: Sequence[int]) -> None:
    """Hand rows queued by a committed transaction to the workers now, on the `urgent` queue.

    If the broker cannot take them nothing is lost: the rows are due now and the next pass sends them.
    """
    for message_id in message_ids:
        try:
            app.send_task("aftercare.send_message", (message_id, 0), queue="urgent")
        except Exception as exc:  # noqa: BLE001 - any broker error: the next pass sends it
            log.warning(
                "could not enqueue urgent message %s (%s); the next pass sends it", message_id, type(exc).__name__
            )


@worker_process_init.connect
def _fresh_connections(**_kw: Any) -> None:
    # Database connections must not be shared across a fork.
    out: Outbound | None = getattr(app, _RUNTIME_ATTR, None)
    if out is not None:
        out.ctx.db.dispose()
