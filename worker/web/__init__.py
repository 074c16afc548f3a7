"""The web side: the app factory, the JSON API (`api/`, a module per resource), Twilio webhooks,
the patient pages (email check-in links, the PHQ-9 form) and the on-call flag page."""
