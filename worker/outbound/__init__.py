"""Sending: dispatch (claim, send, record), recovery of stale sends, rendering, templates,
signed links, delivery callbacks and the global rate limit."""
