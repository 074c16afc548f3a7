"""Aftercare: the follow-up worker of an infusion clinic."""
