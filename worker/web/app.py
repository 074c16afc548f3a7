"""The web app factory: API, Twilio webhooks, patient pages, health.

`create_app` is the web process's composition root: it builds the context (settings, database,
protocol) and the page templates once and keeps them on `app.state`; routes read them there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.context import Context, build_context
from ..core.outbox import EnqueueUrgent
from ..jobs import celery_app
from . import api, checkin_pages, flag_pages, webhooks

log = logging.getLogger("aftercare.web")


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def create_app(ctx: Context | None = None, enqueue_urgent: EnqueueUrgent | None = None) -> FastAPI:
    """The app for this process. `enqueue_urgent` hands committed urgent rows to the workers
    (default: the Celery app, pointed at this process's broker)."""
    ctx = ctx or build_context()
    if enqueue_urgent is None:
        celery_app.configure(celery_app.app, ctx.settings)
        enqueue_urgent = celery_app.enqueue_urgent

    app = FastAPI(title="Aftercare", version="0.1.0")
    app.state.ctx = ctx
    app.state.enqueue_urgent = enqueue_urgent
    app.state.pages = checkin_pages.Pages(ctx, checkin_pages.page_environment(str(ctx.settings.templates_dir)))
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(checkin_pages.router)
    app.include_router(flag_pages.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            field = _field(e.get("loc", ()))
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            if e.get("type") == "json_invalid":
                field, msg = "body", "not valid JSON"
            errors.append({"field": field, "message": msg})
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return JSONResponse(
            {"error": f"{first['field']}: {first['message']}", "field": first["field"], "errors": errors},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail), "field": None}
        return JSONResponse(detail, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        # Twilio retries on 503: an inbound message is never lost to a database outage.
        log.error("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"error": "database unavailable, try again", "field": None}, status_code=503, headers={"Retry-After": "30"}
        )

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        state = {"database": "ok", "broker": "ok"}
        try:
            with ctx.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "down"
            state["database"] = f"down: {type(exc).__name__}"
        try:
            broker_ping(ctx.settings.effective_broker_url)
        except Exception as exc:  # noqa: BLE001 - any failure means "down"
            state["broker"] = f"down: {type(exc).__name__}"
        ok = state["database"] == "ok" and state["broker"] == "ok"
        return JSONResponse({"status": "ok" if ok else "degraded", **state}, status_code=200 if ok else 503)

    return app


def broker_ping(url: str) -> None:
    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        if url.startswith("sqla+"):
            # kombu's SQLAlchemy transport opens (and creates) its database only on first use:
            # without a query, "ok" would not mean the embedded broker is usable.
            conn.default_channel.queue_declare("celery")
