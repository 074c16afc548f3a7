"""PHQ-9: wording, LOINC codes, scoring and severity bands (docs/replies.md).

The PHQ-9 is free to reproduce; its wording must stay exact. The English items use " - " where
the printed form has an em dash, so an item sent by SMS stays GSM-7 (160 chars a segment).
The Spanish text is the authors' official Spanish version (its accents make SMS UCS-2).
"""

from __future__ import annotations

from collections.abc import Sequence

STEM = {
    "en": "Over the last 2 weeks, how often have you been bothered by any of the following problems?",
    "es": "Durante las últimas 2 semanas, ¿qué tan seguido ha tenido molestias debido a los siguientes problemas?",
}

ITEMS = {
    "en": [
        "Little interest or pleasure in doing things",
        "Feeling down, depressed, or hopeless",
        "Trouble falling or staying asleep, or sleeping too much",
        "Feeling tired or having little energy",
        "Poor appetite or overeating",
        "Feeling bad about yourself - or that you are a failure or have let yourself or your family down",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite - "
        "being so fidgety or restless that you have been moving around a lot more than usual",
        "Thoughts that you would be better off dead or of hurting yourself in some way",
    ],
    "es": [
        "Poco interés o placer en hacer cosas",
        "Se ha sentido decaído(a), deprimido(a) o sin esperanzas",
        "Ha tenido dificultad para quedarse o permanecer dormido(a), o ha dormido demasiado",
        "Se ha sentido cansado(a) o con poca energía",
        "Sin apetito o ha comido en exceso",
        "Se ha sentido mal con usted mismo(a) - o que es un fracaso o que ha quedado mal con "
        "usted mismo(a) o con su familia",
        "Ha tenido dificultad para concentrarse en ciertas actividades, tales como leer el "
        "periódico o ver la televisión",
        "¿Se ha movido o hablado tan lento que otras personas podrían haberlo notado? o lo "
        "contrario - muy inquieto(a) o agitado(a) que ha estado moviéndose mucho más de lo normal",
        "Pensamientos de que estaría mejor muerto(a) o de lastimarse de alguna manera",
    ],
}

ANSWERS = {
    "en": ["Not at all", "Several days", "More than half the days", "Nearly every day"],
    "es": ["Ningún día", "Varios días", "Más de la mitad de los días", "Casi todos los días"],
}

PANEL_LOINC = "44249-1"
TOTAL_LOINC = "44261-6"
ITEM_LOINC = ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"]
ANSWER_LOINC = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]  # scores 0, 1, 2, 3

SUICIDE_ITEM = 8  # 0-based index of item 9: any answer >= 1 needs same-day clinician review

_BANDS = ((4, "minimal"), (9, "mild"), (14, "moderate"), (19, "moderately severe"), (27, "severe"))


def _check_answer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
        raise ValueError(f"a PHQ-9 answer is an integer 0-3, got {value!r}")
    return value


def total(answers: Sequence[int]) -> int:
    """Sum of the 9 item scores; ValueError unless exactly 9 answers, each 0-3."""
    if len(answers) != len(ITEM_LOINC):
        raise ValueError(f"the PHQ-9 has 9 items, got {len(answers)} answers")
    return sum(_check_answer(a) for a in answers)


def band(score: int) -> str:
    """Severity band of a total: minimal, mild, moderate, moderately severe, severe."""
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 27:
        raise ValueError(f"a PHQ-9 total is an integer 0-27, got {score!r}")
    return next(name for upper, name in _BANDS if score <= upper)


def item9_positive(answers: Sequence[int]) -> bool:
    """True when item 9 (thoughts of being better off dead / self-harm) was answered >= 1.

    Needs at least 9 answers (item 9 is the last one asked); ValueError otherwise.
    """
    if len(answers) <= SUICIDE_ITEM:
        raise ValueError("item 9 has not been answered")
    return _check_answer(answers[SUICIDE_ITEM]) >= 1
