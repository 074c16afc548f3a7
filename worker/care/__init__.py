"""What happens to a patient: scheduling, check-ins, answers, the PHQ-9 conversation, flags,
crisis escalation and consent. Takes a database session and a `Context`; never sends anything
itself (it writes outbox rows through `worker.core.outbox`)."""
