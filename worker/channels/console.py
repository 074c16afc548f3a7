"""The console outbox: the embedded default when no Twilio or SMTP is configured.

It prints each message (number masked) to stdout and the dispatcher keeps the rendered body
in the `messages` row, so `aftercare run` shows the whole flow with no accounts. It is a
development channel: what it prints is what a phone or mailbox would show.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from ..core.phones import mask_address
from .base import Channel, OutboundMessage, Reconciled, SendResult


class ConsoleChannel(Channel):
    def __init__(self, name: str, stream: TextIO | None = None):
        self.name = name
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, message: OutboundMessage) -> SendResult:
        out = self.stream or sys.stdout
        head = f"[outbox] {self.name} #{message.id} to {mask_address(message.to)}"
        if message.subject:
            head += f" | {message.subject}"
        with self._lock:
            out.write(f"{head}\n    {message.body.strip()}\n")
            out.flush()
        return SendResult.sent(f"console-{self.name}-{message.id}")

    def reconcile(self, message: OutboundMessage):
        # Nothing leaves the machine: sending again cannot reach anyone twice.
        return Reconciled.not_found, None
