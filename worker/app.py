"""The web app: API, Twilio webhooks, email check-in pages, health."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, InterfaceError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import get_settings
from .db import get_engine

log = logging.getLogger("aftercare.web")


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def create_app() -> FastAPI:
    from . import api, checkin_pages, flag_pages, webhooks

    app = FastAPI(title="Aftercare", version="0.1.0")
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(checkin_pages.router)
    app.include_router(flag_pages.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = []
        for e in exc.errors():
            field = _field(e.get("loc", ()))
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            if e.get("type") == "json_invalid":
                field, msg = "body", "not valid JSON"
            errors.append({"field": field, "message": msg})
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return JSONResponse({"error": f"{first['field']}: {first['message']}", "field": first["field"],
                             "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail), "field": None}
        return JSONResponse(detail, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _db_down(request: Request, exc: Exception):
        # Twilio retries on 503: an inbound message is never lost to a database outage.
        log.error("database unavailable: %s", type(exc).__name__)
        return JSONResponse({"error": "database unavailable, try again", "field": None}, status_code=503,
                            headers={"Retry-After": "30"})

    @app.get("/healthz")
    def healthz():
        state = {"database": "ok", "broker": "ok"}
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "down"
            state["database"] = f"down: {type(exc).__name__}"
        try:
            broker_ping()
        except Exception as exc:  # noqa: BLE001
            state["broker"] = f"down: {type(exc).__name__}"
        ok = state["database"] == "ok" and state["broker"] == "ok"
        return JSONResponse({"status": "ok" if ok else "degraded", **state}, status_code=200 if ok else 503)

    return app


def broker_ping() -> None:
    from kombu import Connection

    with Connection(get_settings().effective_broker_url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
