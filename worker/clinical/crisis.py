"""Crisis-language detection in any inbound reply (docs/replies.md).

A hit flags the reply ``crisis``: auto-reply with 988 and alert on-call. A human reviews every
flag, so the matcher errs on the side of flagging:

* Negation is ignored on purpose: "I'm not going to hurt myself" and "I don't want to die"
  match (the phrase is there; a clinician decides).
* Figures of speech that do not contain a listed phrase do not match: "killing it at work",
  "I could die laughing", "this traffic is killing me".
* Matching ignores case, accents, punctuation, apostrophes (straight or curly) and spacing
  ("kill my self", "killmyself", "self-harm"), doubled letters ("kil myself", "killl myself"),
  and one typo (insert/delete/substitute) per phrase word of 5+ letters ("suicde", "myslef"
  is two edits and is missed). Only the first ``MAX_CHARS`` characters are read.
"""

from __future__ import annotations

from functools import lru_cache

from .parsing import _squeeze, words

MAX_CHARS = 5000
_FUZZY_MIN_LEN = 5

# The maintained list. Write phrases in plain words (accents and apostrophes are folded away
# before matching, so "daño" == "dano", "don't" == "dont"). Every word of a phrase must appear,
# in order and adjacent, for a match; add variants as new entries.
PHRASES: tuple[str, ...] = (
    # English
    "suicide",
    "suicidal",
    "kill myself",
    "killing myself",
    "end my life",
    "ending my life",
    "end it all",
    "take my own life",
    "take my life",
    "want to die",
    "wanna die",
    "wish i was dead",
    "wish i were dead",
    "better off dead",
    "hurt myself",
    "hurting myself",
    "cut myself",
    "cutting myself",
    "self harm",
    "no reason to live",
    "dont want to live",
    "dont want to be alive",
    "overdose",
    # Spanish
    "suicidio",
    "suicidarme",
    "matarme",
    "me quiero matar",
    "me voy a matar",
    "quitarme la vida",
    "quiero morir",
    "quiero morirme",
    "me quiero morir",
    "acabar con mi vida",
    "hacerme daño",
    "lastimarme",
    "mejor muerto",
    "mejor muerta",
    "no quiero vivir",
    "no vale la pena vivir",
)

# Real words one typo away from a phrase word that are never crisis language on their own.
_NEAR_MISSES = frozenset({"overdone", "matarte", "matarle", "matarlo", "matarla"})

_PATTERNS: tuple[tuple[str, ...], ...] = tuple(tuple(words(p)) for p in PHRASES)
_SQUEEZED: tuple[str, ...] = tuple(_squeeze("".join(p)) for p in _PATTERNS)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@lru_cache(maxsize=1024)
def _word_matches(token: str, word: str) -> bool:
    if token == word or _squeeze(token) == _squeeze(word):
        return True
    return (
        len(word) >= _FUZZY_MIN_LEN
        and abs(len(token) - len(word)) <= 1
        and token not in _NEAR_MISSES
        and levenshtein(token, word) <= 1
    )


def _matches_at(tokens: list[str], squeezed_tokens: list[str], i: int, pattern: tuple[str, ...], squeezed: str) -> bool:
    n = len(pattern)
    if i + n <= len(tokens) and all(_word_matches(t, w) for t, w in zip(tokens[i : i + n], pattern, strict=True)):
        return True
    # Spacing differs ("killmyself", "kill my self"): glue the tokens, squeeze doubled letters,
    # and compare with the glued phrase. squeeze(a) is always a prefix of squeeze(a + b).
    glued = ""
    for k, token in enumerate(squeezed_tokens[i : i + n + 2], 1):
        glued += token[1:] if glued and token and glued[-1] == token[0] else token
        if not squeezed.startswith(glued):
            return False
        if k != n and glued == squeezed:
            return True
    return False


def contains_crisis_language(text: str | None) -> bool:
    """True when the reply contains any phrase of ``PHRASES`` (see the module doc for how)."""
    tokens = words(text, MAX_CHARS)
    squeezed_tokens = [_squeeze(t) for t in tokens]
    return any(
        _matches_at(tokens, squeezed_tokens, i, p, s)
        for i in range(len(tokens))
        for p, s in zip(_PATTERNS, _SQUEEZED, strict=True)
    )
