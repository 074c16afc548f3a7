"""PHQ-9 data and scoring (DOMAIN.md, SPEC §4)."""

from __future__ import annotations

import pytest

from worker.clinical import phq9

# GSM 03.38 basic character set (the extension table is left out: those characters count double).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_nine_items_and_four_answers_in_each_language(lang):
    assert len(phq9.ITEMS[lang]) == 9
    assert all(item.strip() == item and item for item in phq9.ITEMS[lang])
    assert len(phq9.ANSWERS[lang]) == 4
    assert phq9.STEM[lang]


def test_english_wording_matches_the_published_form():
    assert phq9.ITEMS["en"][0] == "Little interest or pleasure in doing things"
    assert phq9.ITEMS["en"][8] == ("Thoughts that you would be better off dead "
                                   "or of hurting yourself in some way")
    assert phq9.STEM["en"] == ("Over the last 2 weeks, how often have you been bothered "
                               "by any of the following problems?")
    assert phq9.ANSWERS["en"] == ["Not at all", "Several days", "More than half the days",
                                  "Nearly every day"]


@pytest.mark.parametrize("text", [*phq9.ITEMS["en"], phq9.STEM["en"], *phq9.ANSWERS["en"]])
def test_english_text_is_gsm7_so_an_sms_is_not_ucs2(text):
    assert set(text) <= GSM7_BASIC, set(text) - GSM7_BASIC


def test_loinc_codes():
    assert phq9.PANEL_LOINC == "44249-1"
    assert phq9.TOTAL_LOINC == "44261-6"
    assert phq9.ITEM_LOINC == ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                               "44258-2", "44252-5", "44253-3", "44260-8"]
    assert phq9.ANSWER_LOINC == ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]


@pytest.mark.parametrize("answers, expected", [
    ([0] * 9, 0), ([3] * 9, 27), ([1, 2, 3, 0, 1, 2, 3, 0, 1], 13), ((1,) * 9, 9),
])
def test_total_sums_nine_answers(answers, expected):
    assert phq9.total(answers) == expected


@pytest.mark.parametrize("answers", [
    [], [0] * 8, [0] * 10, [0] * 8 + [4], [0] * 8 + [-1], [0] * 8 + [True], [0] * 8 + ["1"],
    [0] * 8 + [1.0], [0] * 8 + [None],
])
def test_total_refuses_anything_but_nine_answers_0_to_3(answers):
    with pytest.raises(ValueError):
        phq9.total(answers)


@pytest.mark.parametrize("score, expected", [
    (0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
    (15, "moderately severe"), (19, "moderately severe"), (20, "severe"), (27, "severe"),
])
def test_band_boundaries(score, expected):
    assert phq9.band(score) == expected


@pytest.mark.parametrize("score", [-1, 28, 100, 4.5, "5", None, True])
def test_band_refuses_a_total_outside_0_to_27(score):
    with pytest.raises(ValueError):
        phq9.band(score)


def test_every_total_has_a_band():
    assert [phq9.band(t) for t in range(28)].count("minimal") == 5


def test_item9_positive_is_item_nine_at_least_one():
    assert phq9.SUICIDE_ITEM == 8
    assert phq9.item9_positive([0] * 8 + [1])
    assert phq9.item9_positive([0] * 8 + [3])
    assert not phq9.item9_positive([3] * 8 + [0])


@pytest.mark.parametrize("answers", [[], [1] * 8, [0] * 8 + [4], [0] * 8 + [None]])
def test_item9_positive_refuses_a_missing_or_invalid_item_nine(answers):
    with pytest.raises(ValueError):
        phq9.item9_positive(answers)
