"""Engine and sessions. SQLite is the embedded default, PostgreSQL production.

A process builds one `Database` (its composition root does, see `context.py`) and passes it
down; there is no module-level engine cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Text, create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class AnyText(TypeDecorator[str]):
    """Text that keeps any character, NUL included, on PostgreSQL too (which refuses NUL in text).

    A value PostgreSQL cannot hold -- or one that starts like an escaped value -- is stored as the
    marker plus its JSON form (which spells NUL as \\u0000), and read back exactly. Everything
    else is stored as it is. SQLite keeps NUL as it is.
    """

    impl = Text
    cache_ok = True
    MARKER = "\u2060aftercare-escaped:"  # a word joiner first: no real message starts like this

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or dialect.name != "postgresql":
            return value
        if "\x00" in value or value.startswith(self.MARKER):
            return self.MARKER + json.dumps(value)
        return value

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and dialect.name == "postgresql" and value.startswith(self.MARKER):
            decoded: str = json.loads(value[len(self.MARKER) :])
            return decoded
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the web app, worker and beat processes share one file.
            cur = dbapi_conn.cursor()
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, engine: Engine | None = None):
        self.url = url
        self.engine = engine or make_engine(url)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def scope(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on error."""
        db = self.session()
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            db.info.clear()  # notes taken for after the commit (e.g. urgent sends) are void
            raise
        finally:
            db.close()

    def dispose(self) -> None:
        """Drop pooled connections (after a fork: they must not be shared with the parent)."""
        self.engine.dispose()


def is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"
