"""Parsers for inbound SMS replies (docs/replies.md).

Every parser is pure, never raises on any ``str`` (or ``None``), and returns ``None`` when it
cannot read the reply with confidence: the caller then sends one clarifying reply, so a wrong
guess is worse than ``None``. Only the first ``MAX_CHARS`` characters (after stripping) are read:
an SMS body is at most 1,600 characters, and this keeps every parser linear and fast.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 2000
_MAX_DIGITS = 1000  # a longer digit run is not read as a number (int() of huge strings is slow)

# Apostrophes and look-alikes are deleted (so "I’m" == "im", "don't" == "dont").
_APOSTROPHES = dict.fromkeys(map(ord, "'’‘ʼ`´′"), None)
_DASHES = {0x2212: "-", 0x2013: "-"}  # minus sign, en dash (as a minus before a digit)
_WORD = re.compile(r"[^\W_]+")


def fold(text: str | None, limit: int = MAX_CHARS) -> str:
    """Lower-case, accent-free, apostrophe-free form of ``text`` (NFKD, combining marks dropped)."""
    if not text:
        return ""
    text = str(text).strip()[:limit].translate(_APOSTROPHES).translate(_DASHES)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M")).casefold()


def words(text: str | None, limit: int = MAX_CHARS) -> list[str]:
    """The folded words of ``text``: runs of letters/digits; punctuation and emoji split words."""
    return _WORD.findall(fold(text, limit))


def _squeeze(word: str) -> str:
    """Collapse repeated letters, so "yesss", "siii", "noooo" read as "yes", "si", "no"."""
    return re.sub(r"(.)\1+", r"\1", word)


# --- yes / no / home ---------------------------------------------------------------------------

_YES = {"yes", "yep", "yeah", "yea", "yup", "si", "claro"}
_NO = {"no", "nope", "nah"}
_HOME = {"home", "casa"}
# Anything that says "not (yet) home": negations and on-the-way words. Any of them -> None.
_NOT_HOME = {
    "not",
    "never",
    "cant",
    "dont",
    "didnt",
    "havent",
    "hasnt",
    "hadnt",
    "isnt",
    "arent",
    "wasnt",
    "werent",
    "wont",
    "aint",
    "yet",
    "soon",
    "almost",
    "nearly",
    "later",
    "heading",
    "headed",
    "going",
    "driving",
    "leaving",
    "omw",
    "otw",
    "way",
    "todavia",
    "aun",
    "pronto",
    "casi",
    "camino",
    "rumbo",
    "voy",
    "vamos",
    "yendo",
    "nunca",
}


def _yes_no_hits(ws: list[str]) -> tuple[bool, bool]:
    squeezed = [_squeeze(w) for w in ws]
    yes = any(w in _YES for w in squeezed) or (ws[:1] == ["y"])
    no = any(w in _NO for w in squeezed) or (ws[:1] == ["n"])
    return yes, no


def parse_yes_no(text: str | None) -> bool | None:
    """True for YES/Y/YEP/SI/SÍ (+ yeah, yup, claro, "yes please"), False for NO/N/nope/nah.

    A reply holding both a yes-word and a no-word ("no problem, yes") is ambiguous: None.
    The single letters Y and N count only as the first word ("y" is also Spanish "and").
    """
    ws = words(text)
    if not ws:
        return None
    yes, no = _yes_no_hits(ws)
    if yes == no:
        return None
    return yes


def parse_home(text: str | None) -> bool | None:
    """True for HOME/YES/CASA/SI (+ "I'm home", "home now", "estoy en casa"); otherwise None.

    Never False: "not home yet", "on my way home", "no" all give None (ask again later).
    """
    ws = words(text)
    if not ws:
        return None
    yes, no = _yes_no_hits(ws)
    home = any(_squeeze(w) in _HOME or w in _HOME for w in ws)
    if no or any(w in _NOT_HOME for w in ws):
        return None
    return True if (yes or home) else None


# --- numbers -----------------------------------------------------------------------------------

_NUMBER_WORDS = {
    # English
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    # Spanish ("un"/"una" are articles and "once" is English too: deliberately left out)
    "cero": 0,
    "uno": 1,
    "dos": 2,
    "tres": 3,
    "cuatro": 4,
    "cinco": 5,
    "seis": 6,
    "siete": 7,
    "ocho": 8,
    "nueve": 9,
    "diez": 10,
    "doce": 12,
    "trece": 13,
    "catorce": 14,
    "quince": 15,
    "dieciseis": 16,
    "diecisiete": 17,
    "dieciocho": 18,
    "diecinueve": 19,
    "veinte": 20,
    "treinta": 30,
    "cuarenta": 40,
    "cincuenta": 50,
    "cien": 100,
    "ciento": 100,
}
# "one" after these words is a pronoun ("no one", "the one"), not a number.
_NOT_NUMBER_BEFORE_ONE = {"no", "any", "every", "some", "the", "this", "that", "which"}
_LETTERS = re.compile(r"[^\W\d_]+")
_DECIMAL = re.compile(r"\d[.,]\d")
_DENOMINATOR = re.compile(r"(\d)\s*(?:/|\bout of\b|\bof\b|\bde\b|\bsobre\b)\s*10(?!\d)")
_INTEGER = re.compile(r"(?:(?<![^\W_])-)?\d+")


def _word_to_digits(match: re.Match) -> str:
    word = match.group()
    value = _NUMBER_WORDS.get(word)
    if value is None:
        return word
    if word == "one":
        before = match.string[max(0, match.start() - 12) : match.start()].split()
        if before and before[-1] in _NOT_NUMBER_BEFORE_ONE:
            return word
    return f" {value} "


def _integers(folded: str) -> set[int] | None:
    """The distinct integers in ``folded`` ("/10", "out of 10" dropped); None if unreadable."""
    if _DECIMAL.search(folded):
        return None  # "7.5", "7,5": not an integer answer
    folded = _DENOMINATOR.sub(r"\1", folded)
    found: set[int] = set()
    for m in _INTEGER.finditer(folded):
        digits = m.group().lstrip("-").lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            return None
        found.add(-int(digits) if m.group().startswith("-") else int(digits))
    return found


def _numbers(text: str | None) -> set[int] | None:
    """Digits win over number words ("one of those days, 4" -> {4}); words only when no digits."""
    folded = "".join(ch if not ch.isdigit() or ch.isascii() else " " for ch in fold(text))
    found = _integers(folded)
    if found is None or found:
        return found
    return _integers(_LETTERS.sub(_word_to_digits, folded))


def find_number(text: str | None) -> int | None:
    """The single integer in the reply, any size or sign ("7", "7/10", "seven", "-3", "42").

    None when there is no number, more than one different number ("between 5 and 6"), or a
    decimal ("7.5"). A trailing "/10", "out of 10", "of 10", "de 10", "sobre 10" is ignored.
    """
    found = _numbers(text)
    if not found or len(found) != 1:
        return None
    return next(iter(found))


def parse_mood(text: str | None) -> int | None:
    """Mood 0-10 (docs/replies.md); None when no number or out of range (use find_number to tell which)."""
    n = find_number(text)
    return n if n is not None and 0 <= n <= 10 else None


# --- PHQ-9 answers -----------------------------------------------------------------------------

# Folded answer labels (and a few safe variants) -> score. Matched as whole words.
_PHQ9_LABELS = {
    "not at all": 0,
    "never": 0,
    "para nada": 0,
    "nada": 0,
    "ningun dia": 0,
    "nunca": 0,
    "several days": 1,
    "several": 1,
    "some days": 1,
    "varios dias": 1,
    "more than half the days": 2,
    "more than half": 2,
    "half the days": 2,
    "mas de la mitad de los dias": 2,
    "mas de la mitad": 2,
    "nearly every day": 3,
    "almost every day": 3,
    "casi todos los dias": 3,
}


def parse_phq9_item(text: str | None) -> int | None:
    """A PHQ-9 answer 0-3: a digit, a number word (en/es) or an answer label (en/es).

    A label and a number that disagree ("2 - nearly every day") give None.
    """
    joined = f" {' '.join(words(text))} "
    values = {v for label, v in _PHQ9_LABELS.items() if f" {label} " in joined}
    numbers = _numbers(text)
    if numbers is None:
        return None
    values |= numbers
    if len(values) != 1:
        return None
    value = next(iter(values))
    return value if 0 <= value <= 3 else None


# --- opt-out keywords --------------------------------------------------------------------------

_KEYWORDS = {
    "stop": "stop",
    "stopall": "stop",
    "unsubscribe": "stop",
    "cancel": "stop",
    "end": "stop",
    "quit": "stop",
    "start": "start",
    "unstop": "start",
    "help": "help",
}


def classify_keyword(text: str | None) -> str | None:
    """ "stop" / "start" / "help" when the reply is the keyword alone (docs/replies.md), else None.

    Case, accents, surrounding whitespace, punctuation and emoji are ignored ("Stop!", " STOP. ");
    any other word makes it an ordinary reply ("stop texting me" -> None).
    """
    ws = words(text)
    return _KEYWORDS.get(ws[0]) if len(ws) == 1 else None


def keyword_from_opt_out_type(value: str | None) -> str | None:
    """Twilio's OptOutType ("STOP", "START", "HELP", any case) -> "stop"/"start"/"help"."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if value in ("stop", "start", "help") else None
