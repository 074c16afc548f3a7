"""The `aftercare` command (docs/operations.md)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

import httpx
import uvicorn

from ..core.config import ConfigError, Settings, load_settings
from ..core.db import utcnow
from ..jobs.celery_app import app as celery
from ..jobs.celery_app import configure
from ..web.app import create_app
from ..web.auth import add_clinician, create_token
from .demo import run_demo
from .processes import run_parts
from .reply import post_inbound_sms
from .startup import CliError, context, ensure_db
from .template_check import check_templates

log = logging.getLogger("aftercare")


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- commands ---------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    ensure_db(context(settings), create=True)
    print("database is up to date")
    return 0


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    ctx = context(settings)
    ensure_db(ctx, create=False)
    uvicorn.run(create_app(ctx), host=args.host, port=args.port, log_level="info", proxy_headers=True)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    ctx = context(settings)
    ensure_db(ctx, create=False)
    configure(celery, settings)  # each worker process builds its runtime after the fork
    argv = ["worker", "--loglevel=INFO", f"--concurrency={args.concurrency}", "--without-gossip", "--without-mingle"]
    if settings.database_url.startswith("sqlite") and not settings.broker_url:
        argv.append("--pool=threads")  # embedded mode: one process, no fork over SQLite
    celery.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    ctx = context(settings)
    ensure_db(ctx, create=False)
    configure(celery, settings)
    celery.start(["beat", "--loglevel=INFO"])
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Web app, worker and beat together; Ctrl-C stops all three."""
    ensure_db(context(settings), create=True)
    return run_parts(args.host, args.port)


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    ctx = context(settings)
    ensure_db(ctx, create=False)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("passwords do not match")
    try:
        with ctx.db.scope() as db:
            add_clinician(db, args.email, password, utcnow())
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"clinician {args.email.strip().lower()} added")
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    ctx = context(settings)
    ensure_db(ctx, create=False)
    if not args.name.strip():
        raise CliError("NAME: required")
    with ctx.db.scope() as db:
        token = create_token(db, args.name.strip(), utcnow())
    print(f"API token for {args.name.strip()} (shown once, only its hash is stored): {token}")
    return 0


def cmd_reply(args: argparse.Namespace, settings: Settings) -> int:
    try:
        status, body = post_inbound_sms(settings, args.phone, args.text, base_url=args.url)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:
        raise CliError(f"cannot reach the app at {args.url or settings.public_base_url}: {exc}") from None
    print(f"{status} {body}")
    return 0 if status < 400 else 1


def cmd_templates_check(args: argparse.Namespace, settings: Settings) -> int:
    return check_templates(settings, out=sys.stdout)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(args)  # the demo sets its own defaults in the environment and reads it again


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aftercare", description="Follow-up messages after an infusion session.")
    sub = p.add_subparsers(dest="command", required=True)

    def hostport(sp: argparse.ArgumentParser) -> None:
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        settings = load_settings()  # the process's one read of the environment
        code: int = args.func(args, settings)
        return code
    except ConfigError as exc:
        print(f"aftercare: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"aftercare: {exc}", file=sys.stderr)
        return 2
