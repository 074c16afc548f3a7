"""messages.expects: what the step expects in reply, carried by the row

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Rows made before this revision: the shipped templates tell what their step expects.
_BY_TEMPLATE = {"ride_confirm": "yes_no", "home_safe": "home", "mood_checkin": "mood", "phq9": "phq9",
                "phq9_question": "phq9"}


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expects", sa.String(length=10), server_default="none", nullable=False))
    messages = sa.table("messages", sa.column("template", sa.String), sa.column("kind", sa.String),
                        sa.column("expects", sa.String))
    for template, expects in _BY_TEMPLATE.items():
        op.execute(messages.update()
                   .where(messages.c.template == template, messages.c.kind.in_(["step", "followup"]))
                   .values(expects=expects))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("expects")
