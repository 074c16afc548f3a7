"""Database types: what goes in comes out, on SQLite and PostgreSQL alike."""

from datetime import UTC, datetime

import pytest

from tests.conftest import DATABASE
from worker.core.db import AnyText
from worker.core.models import Reply, ReplyChannel


@pytest.mark.parametrize("body", ["crisis\x00 text", "\x00", AnyText.MARKER + '"looks escaped"', "plain \\u0000"])
def test_any_text_round_trips_every_character(db_clean, body):
    with DATABASE.scope() as db:
        reply = Reply(channel=ReplyChannel.sms, from_address="+12125550101", body=body,
                      received_at=datetime.now(UTC))
        db.add(reply)
        db.flush()
        reply_id = reply.id
    with DATABASE.scope() as db:
        assert db.get(Reply, reply_id).body == body


def test_ordinary_text_is_stored_as_it_is(db_clean):
    with DATABASE.scope() as db:
        db.add(Reply(channel=ReplyChannel.sms, body="7 today", received_at=datetime.now(UTC)))
    with DATABASE.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT body FROM replies")).scalar_one() == "7 today"
