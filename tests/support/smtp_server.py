"""A real SMTP server (aiosmtpd) on 127.0.0.1 collecting messages, scriptable to refuse.

Use in a test module: ``from tests.support.smtp_server import smtp_server  # noqa: F401``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from tests.support.live import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


class SmtpRecorder:
    """The aiosmtpd handler: records messages; refuses as scripted."""

    def __init__(self):
        self.messages: list[Received] = []
        self.refuse: dict[str, str] = {}  # recipient -> full reply, e.g. "550 5.1.1 no such user"
        self.defer_next = 0  # answer the next n RCPTs with 451
        self.logins: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            if self.defer_next > 0:
                self.defer_next -= 1
                return "451 4.3.0 Temporary local problem, try again later"
            if address in self.refuse:
                return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                                          or envelope.content))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            with self._lock:
                self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class SmtpServer:
    def __init__(self):
        from aiosmtpd.controller import Controller

        self.recorder = SmtpRecorder()
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port,
                                     authenticator=self.recorder.authenticate, auth_require_tls=False)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Received]:
        return list(self.recorder.messages)

    def refuse(self, address: str, reply: str = "550 5.1.1 <{}>: Recipient address rejected: User unknown") -> None:
        self.recorder.refuse[address] = reply.format(address)

    def defer(self, n: int = 1) -> None:
        self.recorder.defer_next = n



@pytest.fixture
def smtp_server(monkeypatch, stack):
    """A running SMTP server; SMTP_URL and MAIL_FROM point at it; the test's context rebuilt."""
    server = SmtpServer().start()
    monkeypatch.setenv("SMTP_URL", server.url)
    monkeypatch.setenv("MAIL_FROM", "Northside Clinic <care@northside.example.org>")
    stack.reload()
    yield server
    server.stop()


def first(server: SmtpServer, to: str | None = None) -> EmailMessage:
    for r in server.messages:
        if to is None or to in r.rcpt_tos:
            return r.message
    raise AssertionError(f"no message{' to ' + to if to else ''}")
