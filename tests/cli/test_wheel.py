"""Installs like a library: the built wheel, in a fresh virtualenv, starts from an empty directory
with the templates and default protocol it ships (no source checkout, no TEMPLATES_DIR)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.live import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the runtime lock and the wheel (not editable) installed; its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run(sys.executable, "-m", "build", "--wheel", "--outdir", work / "dist", ROOT, cwd=work)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("aftercare-*.whl")
    venv.create(work / "venv", with_pip=True)
    pip = work / "venv" / "bin" / "pip"
    deps = _run(pip, "install", "--quiet", "--require-hashes", "-r", ROOT / "requirements" / "runtime.lock")
    assert deps.returncode == 0, deps.stderr[-3000:]
    pkg = _run(pip, "install", "--quiet", "--no-deps", wheel)
    assert pkg.returncode == 0, pkg.stderr[-3000:]
    return work / "venv" / "bin"


def _clean_env(**extra: str) -> dict[str, str]:
    """The machine's environment without the suite's settings, as a clinic's server would have it."""
    drop = ("DATABASE_URL", "BROKER_URL", "PUBLIC_BASE_URL", "SECRET_KEY", "TEMPLATES_DIR", "FOLLOWUP_PROTOCOL",
            "DISPATCH_INTERVAL", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("TWILIO_", "SMTP_"))}
    env.update(extra)
    return env


def test_the_installed_wheel_ships_templates_and_protocol(installed, tmp_path):
    check = _run(installed / "aftercare", "templates", "check", cwd=tmp_path, env=_clean_env())
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "templates check OK" in check.stdout
    assert str(ROOT) not in check.stdout  # rendered from the installed package, not this checkout


def test_init_then_run_from_an_empty_directory(installed, tmp_path):
    env = _clean_env()
    init = _run(installed / "aftercare", "init", cwd=tmp_path, env=env)
    assert init.returncode == 0, init.stderr[-2000:]
    assert (tmp_path / "aftercare.db").exists()

    port = free_port()
    proc = subprocess.Popen([str(installed / "aftercare"), "run", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        health = wait_healthy(port, timeout=60)
        assert health is not None and health.status_code == 200, "the installed app did not come up"
        assert health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
