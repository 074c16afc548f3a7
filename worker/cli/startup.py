"""Start-up checks: refuse to start on a bad configuration, protocol or database, in one line."""

from __future__ import annotations

import logging

from ..core.config import Settings
from ..core.context import Context, build_context
from ..core.migrate import needs_upgrade, upgrade
from ..core.protocol import ProtocolError

log = logging.getLogger("aftercare")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def context(settings: Settings) -> Context:
    """The process's context; a bad protocol file is refused naming the step and the field."""
    try:
        return build_context(settings)
    except ProtocolError as exc:
        raise CliError(f"FOLLOWUP_PROTOCOL ({settings.protocol_path}): {exc}") from None


def ensure_db(ctx: Context, create: bool) -> None:
    """Create or migrate the schema (`create`), or refuse to start on one that is not up to date."""
    try:
        if needs_upgrade(ctx.db):
            if not create:
                raise CliError("the database is not initialised or is out of date: run `aftercare init`")
            upgrade(ctx.db)
            log.info("database ready")
    except CliError:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error: one line naming the variable
        raise CliError(f"DATABASE_URL: cannot use the database ({type(exc).__name__}: {exc})") from None
