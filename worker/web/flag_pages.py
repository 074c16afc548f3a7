"""/flags/{id}: where an on-call alert's link lands. Shows no PHI: the kind, the time, whether
someone acknowledged it, and where to look next (the API; the dashboard will take over)."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..core.models import Flag
from .state import get_ctx

router = APIRouter()


@router.get("/flags/{flag_id}", response_class=HTMLResponse)
def flag_page(flag_id: int, request: Request) -> HTMLResponse:
    with get_ctx(request).db.scope() as db:
        flag = db.get(Flag, flag_id)
        if flag is None:
            return HTMLResponse("<!doctype html><title>Not found</title><p>No such flag.</p>", status_code=404)
        state = (
            f"acknowledged at {flag.acknowledged_at:%Y-%m-%d %H:%M} UTC"
            if flag.acknowledged_at
            else "OPEN - not yet acknowledged"
        )
        body = (
            f"<h1>Flag #{flag.id}: {escape(str(flag.kind))}</h1><p>Raised {flag.raised_at:%Y-%m-%d %H:%M} UTC; "
            f"{escape(state)}.</p><p>Details (signed in): <code>GET /api/flags?patient_id=</code> and "
            f"<code>GET /api/replies?flag={escape(str(flag.kind))}</code>; acknowledge with "
            f"<code>POST /api/flags/{flag.id}/ack</code>.</p>"
        )
    return HTMLResponse(
        '<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1"><title>Aftercare flag</title>' + body,
        headers={"Cache-Control": "no-store"},
    )
