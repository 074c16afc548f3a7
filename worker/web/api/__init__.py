"""The JSON API (docs/api.md), one module per resource; bearer tokens on every route."""

from fastapi import APIRouter

from . import flags, patients, replies, sessions

router = APIRouter(prefix="/api")
for module in (patients, sessions, replies, flags):
    router.include_router(module.router)
