"""A live stack in one process: uvicorn on 127.0.0.1, a Celery worker and beat on Redis.

Used by the end-to-end tests and by bench/inbound.py. The caller sets the environment
(DATABASE_URL, BROKER_URL, TWILIO_*, ...) first.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from worker.core.context import Context
from worker.core.outbox import EnqueueUrgent
from worker.outbound.runtime import Outbound


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def web_server(ctx: Context, port: int, enqueue_urgent: EnqueueUrgent | None = None) -> Iterator[str]:
    """The app on uvicorn at 127.0.0.1:port; urgent sends go to the Celery app unless `enqueue_urgent`."""
    import uvicorn

    from worker.web.app import create_app

    app = create_app(ctx, enqueue_urgent=enqueue_urgent)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def worker_and_beat(out: Outbound, schedule_file: str, concurrency: int = 4) -> Iterator[None]:
    """A real Celery worker (threads) and beat on the configured broker, sending through `out`.

    The shared Celery app gets this runtime for the block only: it is detached afterwards.
    """
    from celery.beat import Service
    from celery.contrib.testing.worker import start_worker

    from worker.jobs.celery_app import app, configure, detach

    configure(app, out.ctx.settings, out)
    beat = Service(app, max_interval=0.5, schedule_filename=schedule_file)
    beat_thread = threading.Thread(target=beat.start, daemon=True)
    try:
        with start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                          shutdown_timeout=10):
            beat_thread.start()
            try:
                yield
            finally:
                beat.stop()
                beat_thread.join(5)
    finally:
        detach(app)


def wait_healthy(port: int, timeout: float = 40.0) -> httpx.Response | None:
    """Poll http://127.0.0.1:port/healthz until it answers 200 or `timeout` passes; the last answer."""
    deadline, health = time.time() + timeout, None
    while time.time() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if health.status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    return health


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value (or the last falsy one)."""
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


_HTTP = threading.local()


def post_signed_sms(base_url: str, public_base: str, token: str, sender: str, body: str) -> httpx.Response:
    from tests.support.inbound import signature, sms_params

    params = sms_params(sender, body)
    sig = signature(params, token=token, base=public_base)
    if not hasattr(_HTTP, "client"):  # one keep-alive client per thread
        _HTTP.client = httpx.Client(timeout=10)
    return _HTTP.client.post(f"{base_url}/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": sig})
