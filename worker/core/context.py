"""The composition root's core: settings, database and protocol, built once per process.

The CLI, the web app factory and the Celery worker each build one `Context` at start and pass
it down; nothing below reads the environment or keeps a module-level cache. Layers above add
what they own (channels and templates: `worker.outbound.runtime.Outbound`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings, load_settings
from .db import Database
from .protocol import Protocol, load_protocol


@dataclass(frozen=True, eq=False)
class Context:
    settings: Settings
    db: Database
    protocol: Protocol


def build_context(settings: Settings | None = None, database: Database | None = None) -> Context:
    """Read settings (unless given), open the database engine and load the protocol.

    Raises ConfigError / ProtocolError naming what is wrong.
    """
    settings = settings or load_settings()
    protocol = load_protocol(settings.protocol_path, settings.templates_dir)
    return Context(settings=settings, db=database or Database(settings.database_url), protocol=protocol)
