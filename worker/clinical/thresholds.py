"""Clinical thresholds, named once: the rules that turn an answer into a flag."""

from __future__ import annotations

LOW_MOOD_MAX = 3  # a mood of 3/10 or less raises low_mood
MOOD_DROP = 3  # ... and so does a drop of 3 or more from the patient's previous mood score
PHQ9_LOW_MOOD_TOTAL = 15  # a PHQ-9 total of 15 (moderately severe) or more raises low_mood
PHQ9_ITEM9_CRISIS = 1  # any answer >= 1 to item 9 raises crisis, before the survey ends
PHQ9_RESPONSE_DROP = 0.5  # response: a drop of 50 % or more from the baseline total
PHQ9_REMISSION_BELOW = 5  # remission: a total under 5


def low_mood(score: int, previous: int | None) -> bool:
    """Mood (0-10) low enough, or fallen far enough since the last answer, for a clinician to look."""
    return score <= LOW_MOOD_MAX or (previous is not None and previous - score >= MOOD_DROP)


def phq9_low_mood(total: int) -> bool:
    return total >= PHQ9_LOW_MOOD_TOTAL


def phq9_item9_crisis(answer: int) -> bool:
    return answer >= PHQ9_ITEM9_CRISIS
