"""The Celery app. Redis in production; kombu's SQLAlchemy transport on a SQLite file when
BROKER_URL is unset, so `aftercare run` needs no server.

Tasks carry ids only; the database row is the schedule, so nothing here uses ETA/countdown.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue
from celery.signals import worker_process_init

from .config import Settings, get_settings


def configure(app: Celery, settings: Settings) -> None:
    app.conf.update(
        broker_url=settings.effective_broker_url,
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
        broker_transport_options={"visibility_timeout": 3600} if settings.effective_broker_url.startswith(
            ("redis://", "rediss://")) else {},
        beat_schedule={
            "dispatch": {"task": "aftercare.dispatch_tick", "schedule": settings.dispatch_interval,
                         # A tick that could not run in time is pointless: the next one does it.
                         "options": {"expires": max(settings.dispatch_interval * 3, 30)}},
        },
        beat_schedule_filename=str(settings.data_dir / "aftercare-beat-schedule"),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # the console outbox prints to stdout, not as log lines
        # Every worker consumes both; urgent sends (crisis alerts, next PHQ-9 question) are not
        # stuck behind a backlog of routine ones.
        task_queues=(Queue("urgent"), Queue("celery")),
        task_default_queue="celery",
    )


def create_celery(settings: Settings | None = None) -> Celery:
    app = Celery("aftercare", include=["worker.tasks"])
    configure(app, settings or get_settings())
    return app


app = create_celery()


@worker_process_init.connect
def _fresh_connections(**_kw) -> None:
    # Database connections must not be shared across a fork.
    from .db import reset_engines

    reset_engines()
