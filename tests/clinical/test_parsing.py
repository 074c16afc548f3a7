"""Inbound SMS reply parsers (SPEC §4): what each reads, what it refuses, that it never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.clinical.parsing import (
    classify_keyword,
    find_number,
    keyword_from_opt_out_type,
    parse_home,
    parse_mood,
    parse_phq9_item,
    parse_yes_no,
)

HUGE = 100_000


@pytest.mark.parametrize("text, expected", [
    # the spec's lists
    ("YES", True), ("Y", True), ("YEP", True), ("SI", True), ("SÍ", True),
    ("NO", False), ("N", False),
    # obvious variants
    ("yes", True), ("Yes!", True), ("  y ", True), ("sí", True), ("si", True), ("Sí.", True),
    ("yes thanks", True), ("yes please", True), ("Yeah", True), ("yup", True), ("yesss", True),
    ("yes 🙂", True), ("YES, he is here", True), ("claro", True),
    ("no", False), ("No.", False), ("nope", False), ("no thanks", False), ("NOOO", False),
    ("nah", False), ("n", False),
    # ambiguous or unreadable
    ("yes no", None), ("no problem, yes", None), ("maybe", None), ("", None), ("   ", None),
    ("!!!", None), ("7", None), ("yesterday", None), ("nobody", None),
])
def test_parse_yes_no_reads_spec_words_and_refuses_ambiguity(text, expected):
    assert parse_yes_no(text) is expected


def test_parse_yes_no_treats_single_letters_only_as_first_word():
    assert parse_yes_no("y") is True
    assert parse_yes_no("pues y") is None  # "y" is Spanish "and"


@pytest.mark.parametrize("text, expected", [
    ("HOME", True), ("YES", True), ("CASA", True), ("SI", True), ("SÍ", True),
    ("home", True), ("Home!", True), ("I'm home", True), ("I’m home", True), ("home now", True),
    ("home safe", True), ("estoy en casa", True), ("Ya en casa", True), ("yep", True),
    ("not home yet", None), ("on my way home", None), ("almost home", None),
    ("heading home", None), ("no", None), ("NO", None), ("todavía no", None),
    ("I'm not home", None), ("can't talk", None), ("", None), ("7", None), ("homework", None),
])
def test_parse_home_is_true_or_none_never_false(text, expected):
    assert parse_home(text) is expected


@pytest.mark.parametrize("text, expected", [
    ("7", 7), ("7/10", 7), ("a 6 today", 6), ("seven", 7), ("Seven.", 7), ("10", 10), ("0", 0),
    ("siete", 7), ("cero", 0), ("diez", 10), ("seis hoy", 6), ("6/10", 6), ("6 / 10", 6),
    ("5 out of 10", 5), ("5 of 10", 5), ("7 de 10", 7), ("seven out of ten", 7), ("10/10", 10),
    ("  8!  ", 8), ("I'd say a 4", 4), ("7 7", 7), ("no one called, 4", 4),
    ("one of those days, 3", 3), ("７", 7),
    # out of range, none, ambiguous
    ("11", None), ("-3", None), ("7.5", None), ("7,5", None), ("between 5 and 6", None),
    ("5-6", None), ("100", None), ("eleven", None), ("great", None), ("", None), ("6/100", None),
])
def test_parse_mood_reads_an_integer_0_to_10(text, expected):
    assert parse_mood(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("11", 11), ("-3", -3), ("42 today", 42), ("eleven", 11), ("7", 7),
    ("great", None), ("7.5", None), ("between 5 and 6", None), ("", None),
])
def test_find_number_tells_out_of_range_from_no_number(text, expected):
    assert find_number(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("1", 1), ("2", 2), ("3", 3), ("zero", 0), ("one", 1), ("two", 2), ("three", 3),
    ("cero", 0), ("uno", 1), ("dos", 2), ("tres", 3), ("2!", 2),
    ("Not at all", 0), ("not at all.", 0), ("Several days", 1), ("More than half the days", 2),
    ("Nearly every day", 3), ("nearly every day 3", 3),
    ("para nada", 0), ("Ningún día", 0), ("ningun dia", 0), ("Varios días", 1),
    ("Más de la mitad de los días", 2), ("Casi todos los días", 3), ("CASI TODOS LOS DIAS", 3),
    ("4", None), ("-1", None), ("1.5", None), ("1 or 2", None), ("2 - nearly every day", None),
    ("sometimes", None), ("", None),
])
def test_parse_phq9_item_reads_0_to_3_digits_words_and_labels(text, expected):
    assert parse_phq9_item(text) == expected


@pytest.mark.parametrize("text, expected", [
    *[(w, "stop") for w in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")],
    *[(w.lower(), "stop") for w in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")],
    ("Stop", "stop"), ("  stop  ", "stop"), ("STOP!", "stop"), ("stop.", "stop"),
    ("\nStop\n", "stop"),
    ("START", "start"), ("unstop", "start"), ("Start.", "start"),
    ("HELP", "help"), ("help?", "help"),
    ("stop texting me", None), ("please stop", None), ("don't stop", None), ("help me", None),
    ("stopping", None), ("yes", None), ("", None), ("stop stop", None),
])
def test_classify_keyword_only_the_word_alone(text, expected):
    assert classify_keyword(text) == expected


@pytest.mark.parametrize("value, expected", [
    ("STOP", "stop"), ("stop", "stop"), ("START", "start"), ("Help", "help"), (" HELP ", "help"),
    ("", None), (None, None), ("UNSUBSCRIBE", None), ("other", None),
])
def test_keyword_from_opt_out_type_maps_twilio_values(value, expected):
    assert keyword_from_opt_out_type(value) == expected


# --- properties --------------------------------------------------------------------------------

def _check_types(text: str) -> None:
    assert parse_yes_no(text) in (True, False, None)
    assert parse_home(text) in (True, None)
    mood = parse_mood(text)
    assert mood is None or (type(mood) is int and 0 <= mood <= 10)
    n = find_number(text)
    assert n is None or type(n) is int
    item = parse_phq9_item(text)
    assert item is None or (type(item) is int and 0 <= item <= 3)
    assert classify_keyword(text) in ("stop", "start", "help", None)
    assert keyword_from_opt_out_type(text) in ("stop", "start", "help", None)


@given(st.text())
def test_parsers_never_raise_and_return_the_right_type(text):
    _check_types(text)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_parsers_never_raise_on_100k_character_text(chunk):
    _check_types((chunk * (HUGE // len(chunk) + 1))[:HUGE])


@pytest.mark.parametrize("text", ["", " " * HUGE, "7" * HUGE, "-" * HUGE, "yes " * (HUGE // 4),
                                  "\u0301" * HUGE, "🙂" * HUGE, "\ud800 stop"])
def test_parsers_never_raise_on_edge_inputs(text):
    _check_types(text)


@pytest.mark.parametrize("n", range(11))
def test_parse_mood_reads_each_in_range_integer(n):
    assert parse_mood(str(n)) == n


@given(st.integers(min_value=11))
def test_parse_mood_refuses_integers_above_10_but_find_number_reads_them(n):
    assert parse_mood(str(n)) is None
    assert find_number(str(n)) == n


@pytest.mark.parametrize("n", range(4))
def test_parse_phq9_item_reads_each_answer_digit(n):
    assert parse_phq9_item(str(n)) == n
