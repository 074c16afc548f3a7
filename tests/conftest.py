"""Fixtures on real parts: SQLite or PostgreSQL (TEST_DATABASE_URL), Redis, the console outbox.

On a machine without PostgreSQL or Redis the affected tests are skipped with a reason;
with CI=true a missing service is a failure instead.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

TMP = Path(tempfile.mkdtemp(prefix="aftercare-tests-"))
IN_CI = os.environ.get("CI", "").lower() == "true"


TEST_DB = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{TMP / 'test.db'}"
IS_PG = TEST_DB.startswith("postgresql")
if IS_PG:
    import atexit

    from tests.pgtools import private_database

    TEST_DB, _drop_test_db = private_database(TEST_DB)
    atexit.register(_drop_test_db)

# The app reads its configuration from the environment: set it before anything imports it.
BASE_ENV = {
    "DATABASE_URL": TEST_DB,
    "CLINIC_NAME": "Northside Clinic",
    "CLINIC_PHONE": "(212) 555-0100",
    "CLINIC_TIMEZONE": "America/New_York",
    "PUBLIC_BASE_URL": "https://aftercare.example.org",
    "SECRET_KEY": "test-secret-key-not-for-production",
    "DISPATCH_INTERVAL": "1",
    "BROKER_URL": "memory://",  # tests that need a real worker set a Redis URL
}
for _k in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID",
           "TWILIO_API_URL", "SMTP_URL", "MAIL_FROM", "BROKER_URL", "FOLLOWUP_PROTOCOL", "ONCALL_SMS",
           "ONCALL_EMAIL", "TWILIO_MAX_MPS", "TEMPLATES_DIR"):
    os.environ.pop(_k, None)
os.environ.update(BASE_ENV)

pytest_plugins = ["tests.fake_twilio", "tests.smtp_server"]  # their fixtures: fake_twilio, smtp_server

from worker import channels as channels_mod  # noqa: E402
from worker.config import reset_settings  # noqa: E402
from worker.db import reset_engines  # noqa: E402


def missing_service(what: str) -> None:
    """Skip, or fail in CI: a missing service must never turn a CI run green."""
    if IN_CI:
        pytest.fail(f"{what} is not available and CI=true: start it (see .ci/run)")
    pytest.skip(f"{what} is not available on this machine")


def pytest_report_header(config):
    return f"aftercare database: {'PostgreSQL' if IS_PG else 'SQLite'} ({TEST_DB.split('@')[-1]})"


def pytest_collection_modifyitems(config, items):
    # PostgreSQL-only tests run in the PostgreSQL pass of `make test`; deselected (not skipped) here.
    if not IS_PG:
        keep = [i for i in items if "postgres_only" not in i.keywords]
        gone = [i for i in items if "postgres_only" in i.keywords]
        if gone:
            config.hook.pytest_deselected(items=gone)
            items[:] = keep


def _reset_schema() -> None:
    from sqlalchemy import text

    from worker.db import engine_for
    from worker.migrate import upgrade

    engine = engine_for(TEST_DB)
    if IS_PG:
        try:
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        except Exception as exc:  # noqa: BLE001
            missing_service(f"PostgreSQL at {TEST_DB} ({type(exc).__name__})")
    upgrade(TEST_DB)


@pytest.fixture(scope="session")
def migrated():
    reset_settings()
    reset_engines()
    _reset_schema()
    yield TEST_DB


def _truncate() -> None:
    from sqlalchemy import text

    from worker.db import engine_for
    from worker.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine_for(TEST_DB).begin() as conn:
        if IS_PG:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Every test starts from the base environment, fresh settings and cached objects."""
    for k, v in BASE_ENV.items():
        monkeypatch.setenv(k, v)
    reset_settings()
    channels_mod.reset_channels()
    from worker.protocol import _cached

    _cached.cache_clear()
    yield
    reset_settings()
    channels_mod.reset_channels()
    _cached.cache_clear()


@pytest.fixture
def db_clean(migrated):
    _truncate()
    yield


@pytest.fixture
def db(db_clean):
    from worker.db import new_session

    s = new_session()
    yield s
    s.close()


@pytest.fixture
def settings():
    from worker.config import get_settings

    return get_settings()


class Outbox:
    """Console channels writing to memory, for assertions."""

    def __init__(self):
        self.stream = io.StringIO()
        self.channels = {
            "sms": channels_mod.ConsoleChannel("sms", self.stream),
            "email": channels_mod.ConsoleChannel("email", self.stream),
        }

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def outbox():
    box = Outbox()
    channels_mod._CACHE.clear()
    from worker.config import get_settings

    channels_mod._CACHE[id(get_settings())] = box.channels
    return box


@pytest.fixture
def token(db_clean):
    from worker.auth import create_token
    from worker.db import session_scope

    with session_scope() as s:
        return create_token(s, "test-ehr", datetime.now(timezone.utc))


@pytest.fixture
def client(token):
    from fastapi.testclient import TestClient

    from worker.app import create_app

    with TestClient(create_app()) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


# -- Redis ------------------------------------------------------------------------------------
def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server():
    """127.0.0.1:6379 if it runs, else a throw-away redis-server, else skip (fail in CI)."""
    from tests.live import free_port

    if _port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if not binary:
        missing_service("Redis (no server on 127.0.0.1:6379 and no redis-server binary)")
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
                             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if _port_open("127.0.0.1", port):
            break
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def redis_url(redis_server):
    """A Redis database of its own for this test, emptied first."""
    import redis

    url = f"{redis_server}/{7 if not IS_PG else 8}"
    redis.Redis.from_url(url).flushdb()
    return url
