"""Pure clinical rules: PHQ-9 wording and scoring, crisis language, reply parsing, thresholds.

No database, no settings: everything here is a function of its arguments.
"""
