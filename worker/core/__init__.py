"""The ground floor: configuration, database, models, protocol, phone numbers and the outbox writer."""
