"""Email over SMTP (``smtplib``): multipart/alternative, text + HTML.

SMTP_URL: ``smtp://[user:pass@]host[:port]`` (plain, port 25), ``smtp+starttls://`` (port 587,
STARTTLS required), ``smtps://`` (implicit TLS, port 465); user and password are URL-decoded
(``%40`` for ``@``). One connection per message: simple, and a broken connection never
poisons the next send.

Outcomes: a 4xx reply, a refused connection, a timeout or a dropped connection *before the
message was handed over* -> ``retry``; a 5xx reply for the sender, the recipient or the data
(e.g. ``550 no such user``) -> ``failed`` with the server's reason. Credentials refused or TLS
not offered are the clinic's configuration, not the message: ``retry`` (the dispatcher gives
up after its attempts, with a flag). If the connection dies *after the whole message was
sent* and before the server answered, it may have been accepted: that is not resent
(``failed``, code ``ambiguous``) -- a duplicate clinical message is worse than one a human
re-sends, and SMTP offers no way to ask (``reconcile`` is always ``unknown``).

The ``Message-ID`` is generated here and is the provider id. Logs show the recipient's
domain only, never the address or the body.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import unquote, urlsplit

from ..core.config import Settings
from ..core.phones import mask_address
from .base import Channel, OutboundMessage, Reconciled, SendResult

log = logging.getLogger("aftercare.email")

SMTP_TIMEOUT = 30.0
DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class SmtpConfig:
    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError("SMTP_URL: scheme must be smtp://, smtp+starttls:// or smtps://")
        if not parts.hostname:
            raise ValueError("SMTP_URL: no host")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None


def _reason(code: int, text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}".strip()


class SmtpEmailChannel(Channel):
    name = "email"

    def __init__(
        self, smtp_url: str, mail_from: str, timeout: float = SMTP_TIMEOUT, ssl_context: ssl.SSLContext | None = None
    ):
        if not mail_from:
            raise ValueError("MAIL_FROM: required with SMTP_URL")
        self.config = SmtpConfig(smtp_url)
        self.mail_from = mail_from
        self.envelope_from = parseaddr(mail_from)[1] or mail_from
        self.domain = self.envelope_from.rpartition("@")[2] or "aftercare.invalid"
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmailChannel:
        return cls(settings.smtp_url or "", settings.mail_from or "")

    # -- building -----------------------------------------------------------------------------
    def build(self, message: OutboundMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.mail_from
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self.domain)
        mail["Auto-Submitted"] = "auto-generated"  # no vacation auto-replies to a clinic robot
        for key, value in (message.headers or {}).items():
            if key.lower() not in ("from", "to", "subject", "date", "message-id"):
                mail[key] = value
        mail.set_content(message.body or "")
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        conn: smtplib.SMTP
        if cfg.scheme == "smtps":
            conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=self.timeout, context=self.ssl_context)
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=self.timeout)
        try:
            conn.ehlo()
            if cfg.scheme == "smtp+starttls":
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, cfg.password or "")
        except BaseException:
            _close(conn)
            raise
        return conn

    # -- Channel --------------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SendResult:
        mail = self.build(message)
        msgid = mail["Message-ID"]
        where = mask_address(message.to)
        handed_over = False
        conn = None
        try:
            conn = self._connect()
            code, text = conn.mail(self.envelope_from)
            if code != 250:
                return self._refused(message, "sender", code, text)
            code, text = conn.rcpt(message.to)
            if code not in (250, 251):
                return self._refused(message, "recipient", code, text)
            handed_over = True  # from here on the server may hold the whole message
            code, text = conn.data(mail.as_bytes(policy=SMTP_POLICY))  # CRLF line ends on the wire
            if code != 250:
                return self._refused(message, "message", code, text)
        except smtplib.SMTPAuthenticationError as exc:
            log.error("SMTP server refused the credentials in SMTP_URL (%s)", exc.smtp_code)
            return SendResult.retry(
                f"mail server refused the login: {_reason(exc.smtp_code, exc.smtp_error)}", code="smtp-auth"
            )
        except smtplib.SMTPNotSupportedError as exc:
            log.error("SMTP server does not support what SMTP_URL asks for (%s)", exc)
            return SendResult.retry(f"mail server does not support {exc}", code="smtp-config")
        except smtplib.SMTPResponseException as exc:  # e.g. 421 on connect, or a refused DATA command
            if handed_over:  # the DATA command itself was refused: nothing was transmitted
                return self._refused(message, "message", exc.smtp_code, exc.smtp_error)
            # Refused at the greeting or EHLO: the server, not this message; try again later.
            log.warning("email %s to %s: mail server refused the session (%s)", message.id, where, exc.smtp_code)
            return SendResult.retry(f"mail server: {_reason(exc.smtp_code, exc.smtp_error)}", code=str(exc.smtp_code))
        except (TimeoutError, smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            if handed_over:
                log.warning(
                    "email %s to %s: connection lost after the message was sent (%s); not resending",
                    message.id,
                    where,
                    type(exc).__name__,
                )
                return SendResult.failed(
                    "the mail server stopped answering after receiving the message; it may "
                    "have been delivered, so it is not sent again",
                    code="ambiguous",
                )
            log.warning("email %s to %s: mail server unavailable (%s)", message.id, where, type(exc).__name__)
            return SendResult.retry(f"mail server unavailable ({type(exc).__name__}: {exc})", code="connect")
        finally:
            if conn is not None:
                _close(conn)
        return SendResult.sent(msgid)

    def _refused(self, message: OutboundMessage, what: str, code: int, text) -> SendResult:
        reason = _reason(code, text)
        where = mask_address(message.to)
        if 400 <= code < 500:
            log.warning("email %s to %s: %s deferred (%s)", message.id, where, what, code)
            return SendResult.retry(f"mail server deferred the {what}: {reason}", code=str(code))
        log.warning("email %s to %s: %s refused (%s)", message.id, where, what, code)
        return SendResult.failed(f"mail server refused the {what}: {reason}", code=str(code))

    def reconcile(self, message: OutboundMessage) -> tuple[Reconciled, str | None]:
        return Reconciled.unknown, None  # SMTP cannot be asked what it received


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except Exception:  # noqa: BLE001 - closing a broken connection: whatever it raises
        with contextlib.suppress(Exception):
            conn.close()
