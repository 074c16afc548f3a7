"""The processes: `aftercare run` serves and stops cleanly on Ctrl-C; `aftercare reply` posts a
correctly signed inbound SMS to a running app."""

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.support.live import free_port, wait_healthy, web_server
from worker.cli import main


def test_run_starts_everything_on_embedded_defaults_and_ctrl_c_stops_it(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}", PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        health = wait_healthy(port)
        assert health is not None and health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
        assert (tmp_path / "run.db").exists() and (tmp_path / "aftercare-broker.db").exists()
        time.sleep(3)  # let worker and beat finish starting
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-2000:]
    assert "stopped" in out
    leftovers = subprocess.run(["pgrep", "-f", f"worker.cli web --host 127.0.0.1 --port {port}"],
                               capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def test_reply_command_posts_a_signed_inbound_sms(db_clean, stack, monkeypatch, capsys):
    from sqlalchemy import select

    from worker.core.models import Reply

    port = free_port()
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "2" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "reply-cli-token")
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "+12125550100")
    monkeypatch.setenv("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    stack.reload()
    with web_server(stack.ctx, port):
        assert main(["reply", "(212) 555-0133", "7 today"]) == 0
        assert capsys.readouterr().out.startswith("200 ")
        # the app checks X-Twilio-Signature (TWILIO_AUTH_TOKEN is set): an unsigned post is refused
        assert httpx.post(f"http://127.0.0.1:{port}/webhooks/twilio/sms",
                          data={"MessageSid": "SMx", "From": "+12125550133", "Body": "x"}).status_code == 403
    with stack.ctx.db.session() as s:
        (reply,) = s.scalars(select(Reply)).all()
    assert (reply.from_address, reply.body) == ("+12125550133", "7 today")


def test_reply_command_names_a_bad_phone(capsys):
    assert main(["reply", "not-a-number", "hi"]) == 2
    assert "PHONE" in capsys.readouterr().err


def test_reply_command_says_when_the_app_is_not_running(capsys, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["reply", "+12125550133", "hi"]) == 2
    assert "cannot reach the app" in capsys.readouterr().err
