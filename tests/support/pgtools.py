"""A PostgreSQL database of one run's own, so parallel test runs and benchmarks never collide."""

from __future__ import annotations

import os
from collections.abc import Callable


def private_database(url: str, label: str = "run") -> tuple[str, Callable[[], None]]:
    """Create `<db>_<label><pid>` next to `url`; return (its URL, a function that drops it).

    Falls back to `url` itself (and a no-op) when the role may not create databases.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{label}{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        admin.dispose()
        return url, lambda: None

    def drop() -> None:
        with admin.connect() as conn:  # FORCE ends the connections still open to it
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop
