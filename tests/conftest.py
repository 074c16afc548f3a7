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
from pathlib import Path

import pytest

TMP = Path(tempfile.mkdtemp(prefix="aftercare-tests-"))
IN_CI = os.environ.get("CI", "").lower() == "true"


TEST_DB = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{TMP / 'test.db'}"
IS_PG = TEST_DB.startswith("postgresql")
if IS_PG:
    import atexit

    from tests.support.pgtools import private_database

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

pytest_plugins = ["tests.support.fake_twilio", "tests.support.smtp_server"]  # their fixtures: fake_twilio, smtp_server

from tests.support.stack import Stack  # noqa: E402
from worker.channels import ConsoleChannel  # noqa: E402
from worker.core.db import Database  # noqa: E402

# One engine for the test database, shared by every test's context (and closed at the end).
DATABASE = Database(TEST_DB)


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

    from worker.core.migrate import upgrade

    if IS_PG:
        try:
            with DATABASE.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        except Exception as exc:
            missing_service(f"PostgreSQL at {TEST_DB} ({type(exc).__name__})")
    upgrade(DATABASE)


@pytest.fixture(scope="session")
def migrated():
    _reset_schema()
    yield TEST_DB
    DATABASE.dispose()


def _truncate() -> None:
    from sqlalchemy import text

    from worker.core.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with DATABASE.engine.begin() as conn:
        if IS_PG:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Every test starts from the base environment."""
    for k, v in BASE_ENV.items():
        monkeypatch.setenv(k, v)
    yield


@pytest.fixture
def stack():
    """This test's composition root: context and runtime built from the environment on first use.

    A test (or fixture) that changes the environment afterwards calls `stack.reload()`.
    """
    return Stack(DATABASE)


@pytest.fixture
def ctx(stack):
    return stack.ctx


@pytest.fixture
def db_clean(migrated):
    _truncate()
    yield


@pytest.fixture
def db(db_clean):
    s = DATABASE.session()
    yield s
    s.close()


@pytest.fixture
def settings(stack):
    return stack.ctx.settings


class Outbox:
    """Console channels writing to memory, for assertions; `out` sends through them."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.stream = io.StringIO()
        self.channels = {"sms": ConsoleChannel("sms", self.stream), "email": ConsoleChannel("email", self.stream)}

    @property
    def out(self):
        """The runtime of the current context, sending through these console channels."""
        return self.stack.outbound(self.channels)

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def outbox(stack):
    return Outbox(stack)


@pytest.fixture
def token(db_clean):
    from worker.core.db import utcnow
    from worker.web.auth import create_token

    with DATABASE.scope() as s:
        return create_token(s, "test-ehr", utcnow())


@pytest.fixture
def enqueued():
    """Urgent sends handed to the workers after a commit; recorded instead of needing a worker."""
    return []


@pytest.fixture
def client(token, stack, enqueued):
    from fastapi.testclient import TestClient

    from worker.web.app import create_app

    with TestClient(create_app(stack.ctx, enqueue_urgent=enqueued.extend)) as c:
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
    from tests.support.live import free_port

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
