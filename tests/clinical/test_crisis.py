"""Crisis-language detection (SPEC §4): robust to case, accents, punctuation and typos."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.clinical.crisis import PHRASES, contains_crisis_language, levenshtein

_ACCENTED = str.maketrans("aeiou", "áéíóú")


def _strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _misspell(phrase: str, how: str) -> str:
    """A one-letter typo in the longest word: delete/substitute (5+ letters) or double a letter."""
    ws = phrase.split()
    i = max(range(len(ws)), key=lambda k: len(ws[k]))
    w, mid = ws[i], len(ws[i]) // 2
    if len(w) < 5:
        ws[i] = w[:mid] + w[mid] + w[mid:]
    elif how == "delete":
        ws[i] = w[:mid] + w[mid + 1:]
    else:
        ws[i] = w[:mid] + ("x" if w[mid] != "x" else "z") + w[mid + 1:]
    return " ".join(ws)


_VARIANTS = [
    *[(p, "as listed") for p in PHRASES],
    *[(p.upper(), "upper case") for p in PHRASES],
    *[(_strip_accents(p), "accents removed") for p in PHRASES],
    *[(p.translate(_ACCENTED), "accents added") for p in PHRASES],
    *[(f"...{p.replace(' ', ', ')}!!", "punctuation") for p in PHRASES],
    *[(f"honestly   I {p}\n  today", "inside a sentence") for p in PHRASES],
    *[(_misspell(p, "delete"), "letter deleted") for p in PHRASES],
    *[(_misspell(p, "substitute"), "letter substituted") for p in PHRASES],
]


@pytest.mark.parametrize("text, how", _VARIANTS)
def test_every_listed_phrase_matches_in_every_variant(text, how):
    assert contains_crisis_language(text), (text, how)


@pytest.mark.parametrize("text", [
    "I want to kill myself", "I’ve thought about suicide", "I feel SUICIDAL",
    "I want to END MY LIFE",
    "i just want to die", "I'm not going to hurt myself", "I don’t want to live anymore",
    "suicde", "kil myself", "killmyself", "kill my self", "self-harm", "selfharm", "over-dose",
    "Quiero morirme", "ya no quiero vivir", "pensé en quitarme la vida", "quiero hacerme daño",
    "estaría mejor muerta", "pienso en el suicidio",
])
def test_crisis_language_in_real_replies_matches(text):
    assert contains_crisis_language(text)


@pytest.mark.parametrize("text", [
    "7", "yes", "home safe", "feeling better today", "no", "I'm tired", "cansado pero bien",
    "", "Y", "SI", "casa", "6/10", "STOP", "killing it at work", "I could die laughing",
    "this traffic is killing me", "the steak was overdone", "I will myself to get up",
    "my sister is visiting", "feeling much better, thanks!", "dormí bien", "mejor hoy",
])
def test_ordinary_replies_do_not_match(text):
    assert not contains_crisis_language(text)


def test_only_the_first_5000_characters_are_read():
    assert contains_crisis_language("x " * 2000 + "suicide")
    assert not contains_crisis_language("x" * 5000 + " suicide")


@pytest.mark.parametrize("a, b, d", [
    ("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("suicide", "suicde", 1),
    ("flaw", "lawn", 2), ("same", "same", 0),
])
def test_levenshtein_distance(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


@given(st.text())
def test_never_raises_and_returns_a_bool(text):
    assert contains_crisis_language(text) in (True, False)


@settings(max_examples=20, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_bounded_time_on_huge_input(chunk):
    text = (chunk * (200_000 // len(chunk) + 1))[:200_000]
    start = time.perf_counter()
    contains_crisis_language(text)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("chunk", ["kil ", "kill my ", "me quiero ", "suicid", "a", "🙂", "mejor "])
def test_bounded_time_on_adversarial_repetition(chunk):
    start = time.perf_counter()
    contains_crisis_language(chunk * 50_000)
    assert time.perf_counter() - start < 1.0
