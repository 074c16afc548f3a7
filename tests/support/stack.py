"""The test's composition root, like the CLI's or the app factory's, built from the environment on demand."""

from __future__ import annotations

from collections.abc import Mapping

from worker.channels import Channel
from worker.core.config import load_settings
from worker.core.context import Context, build_context
from worker.core.db import Database
from worker.outbound.runtime import Outbound, build_outbound


class Stack:
    def __init__(self, database: Database):
        self.database = database
        self._ctx: Context | None = None
        self._out: Outbound | None = None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = build_context(load_settings(), database=self.database)
        return self._ctx

    def reload(self) -> Context:
        """The environment changed: build the context (and runtime) again, as a restarted process would."""
        self._ctx = None
        self._out = None
        return self.ctx

    def outbound(self, channels: Mapping[str, Channel] | None = None) -> Outbound:
        """The runtime of the current context; with `channels`, sending through those instead."""
        if self._out is None or self._out.ctx is not self.ctx:
            self._out = build_outbound(self.ctx)
        return self._out.with_channels(channels) if channels is not None else self._out
