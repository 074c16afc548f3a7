"""The `aftercare` command (SPEC §5)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Optional

from .config import ConfigError, get_settings

log = logging.getLogger("aftercare")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _check_startup() -> None:
    """Refuse to start on a bad configuration or protocol, with a message naming what is wrong."""
    from .protocol import ProtocolError, get_protocol

    settings = get_settings()
    try:
        get_protocol(settings)
    except ProtocolError as exc:
        raise CliError(f"FOLLOWUP_PROTOCOL ({settings.protocol_path}): {exc}") from None


def _ensure_db(create: bool) -> None:
    from .migrate import needs_upgrade, upgrade

    url = get_settings().database_url
    try:
        if needs_upgrade(url):
            if not create:
                raise CliError("the database is not initialised or is out of date: run `aftercare init`")
            upgrade(url)
            log.info("database ready")
    except CliError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CliError(f"DATABASE_URL: cannot use the database ({type(exc).__name__}: {exc})") from None


# -- commands ---------------------------------------------------------------------------------
def cmd_init(args) -> int:
    _ensure_db(create=True)
    print("database is up to date")
    return 0


def cmd_web(args) -> int:
    import uvicorn

    from .app import create_app

    _check_startup()
    _ensure_db(create=False)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info", proxy_headers=True)
    return 0


def cmd_worker(args) -> int:
    from .celery_app import app

    _check_startup()
    _ensure_db(create=False)
    argv = ["worker", "--loglevel=INFO", f"--concurrency={args.concurrency}", "--without-gossip",
            "--without-mingle"]
    if get_settings().database_url.startswith("sqlite") and not get_settings().broker_url:
        argv.append("--pool=threads")  # embedded mode: one process, no fork over SQLite
    app.worker_main(argv)
    return 0


def cmd_beat(args) -> int:
    from .celery_app import app

    _check_startup()
    _ensure_db(create=False)
    app.start(["beat", "--loglevel=INFO"])
    return 0


def _spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "worker.cli", *argv], start_new_session=True)


def cmd_run(args) -> int:
    """Web app, worker and beat together; Ctrl-C stops all three."""
    _check_startup()
    _ensure_db(create=True)
    procs = [_spawn("web", "--host", args.host, "--port", str(args.port)), _spawn("worker"), _spawn("beat")]
    print(f"Aftercare is running on http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for p in procs:
            if p.poll() is not None:
                print(f"aftercare: a part exited with status {p.returncode}; stopping", file=sys.stderr)
                stopping, code = True, 1
        time.sleep(0.3)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    print("stopped", flush=True)
    return code


def cmd_user_add(args) -> int:
    from .auth import add_clinician
    from .db import session_scope, utcnow

    _ensure_db(create=False)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("passwords do not match")
    try:
        with session_scope() as db:
            add_clinician(db, args.email, password, utcnow())
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"clinician {args.email.strip().lower()} added")
    return 0


def cmd_token_create(args) -> int:
    from .auth import create_token
    from .db import session_scope, utcnow

    _ensure_db(create=False)
    if not args.name.strip():
        raise CliError("NAME: required")
    with session_scope() as db:
        token = create_token(db, args.name.strip(), utcnow())
    print(f"API token for {args.name.strip()} (shown once, only its hash is stored): {token}")
    return 0


def cmd_reply(args) -> int:
    import httpx

    from .simulate import post_inbound_sms

    try:
        status, body = post_inbound_sms(args.phone, args.text, base_url=args.url)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:
        raise CliError(f"cannot reach the app at {args.url or get_settings().public_base_url}: {exc}") from None
    print(f"{status} {body}")
    return 0 if status < 400 else 1


def cmd_templates_check(args) -> int:
    from .template_check import check_templates

    return check_templates(get_settings(), out=sys.stdout)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aftercare", description="Follow-up messages after an infusion session.")
    sub = p.add_subparsers(dest="command", required=True)

    def hostport(sp):
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=8000)

    sp = sub.add_parser("run", help="web app + worker + scheduler in one command")
    hostport(sp)
    sp.set_defaults(func=cmd_run)
    sp = sub.add_parser("web", help="the web app (API, webhooks, dashboard)")
    hostport(sp)
    sp.set_defaults(func=cmd_web)
    sp = sub.add_parser("worker", help="a Celery worker (sends messages)")
    sp.add_argument("--concurrency", type=int, default=4)
    sp.set_defaults(func=cmd_worker)
    sub.add_parser("beat", help="the scheduler (dispatch ticks); run exactly one").set_defaults(func=cmd_beat)
    sp = sub.add_parser("demo", help="a guided tour on the embedded defaults")
    hostport(sp)
    sp.set_defaults(func=cmd_demo)
    sub.add_parser("init", help="create or migrate the database").set_defaults(func=cmd_init)

    user = sub.add_parser("user", help="clinician accounts").add_subparsers(dest="user_command", required=True)
    sp = user.add_parser("add", help="add a clinician")
    sp.add_argument("email")
    sp.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sp.set_defaults(func=cmd_user_add)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    sp = token.add_parser("create", help="print a new API token")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_token_create)

    sp = sub.add_parser("reply", help="post a signed inbound SMS to the running app")
    sp.add_argument("phone")
    sp.add_argument("text")
    sp.add_argument("--url", default=None, help="the app's base URL (default PUBLIC_BASE_URL)")
    sp.set_defaults(func=cmd_reply)

    tpl = sub.add_parser("templates", help="message templates").add_subparsers(dest="tpl_command", required=True)
    tpl.add_parser("check", help="render every template; report SMS segments").set_defaults(func=cmd_templates_check)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        get_settings()
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"aftercare: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"aftercare: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
