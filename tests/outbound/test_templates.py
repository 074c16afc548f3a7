"""Message templates: `aftercare templates check`, the Spanish set, and what an SMS may say."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from worker.cli import main
from worker.cli.template_check import sample_context
from worker.core.config import DEFAULT_TEMPLATES
from worker.outbound.templating import MessageTemplates, environment, sms_info

MESSAGES = DEFAULT_TEMPLATES / "messages"
FORBIDDEN = re.compile(r"ketamine|esketamine|infusion|depression|depressed|psychiatr|ketamina|esketamina|"
                       r"infusi[oó]n|depresi[oó]n|deprimid|psiquiatr", re.IGNORECASE)


def _sms_names(lang: str) -> list[str]:
    return sorted(p.name[: -len(".sms.j2")] for p in (MESSAGES / lang).glob("*.sms.j2"))


def _templates(lang: str) -> set[str]:
    return {p.name for p in (MESSAGES / lang).glob("*.j2") if p.name != "_gsm.j2"}


@pytest.fixture
def templates_copy(tmp_path, monkeypatch, stack):
    """A private copy of the shipped templates, selected with TEMPLATES_DIR."""
    target = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, target)
    monkeypatch.setenv("TEMPLATES_DIR", str(target))
    stack.reload()
    return target


def test_templates_check_passes_on_the_shipped_templates(capsys):
    assert main(["templates", "check"]) == 0
    out = capsys.readouterr().out
    assert "templates check OK" in out
    for lang, name in (("en", "home_safe"), ("es", "recovery_tips"), ("es", "phq9_question")):
        assert re.search(rf"^{lang}\s+{name}\s+GSM-7\s+\d+\s+[12]\b", out, re.MULTILINE), (lang, name)
    assert re.search(r"^es\s+ride_confirm\s+\S", out.split("\nEmail\n")[1], re.MULTILINE)  # emails listed


def test_templates_check_fails_on_an_sms_of_three_segments(templates_copy, capsys):
    (templates_copy / "messages/en/too_long.sms.j2").write_text("{{ clinic_name }}: " + "word " * 70)
    assert main(["templates", "check"]) != 0
    out = capsys.readouterr().out
    assert "en/too_long.sms.j2: 3 segments" in out and "FAILED" in out


def test_templates_check_fails_on_an_undefined_variable_and_names_the_template(templates_copy, capsys):
    (templates_copy / "messages/es/home_safe.sms.j2").write_text("Hola {{ frist_name }}")
    assert main(["templates", "check"]) != 0
    out = capsys.readouterr().out
    assert "es/home_safe.sms.j2: undefined variable" in out and "frist_name" in out


def test_templates_check_reports_a_syntax_error_in_an_email(templates_copy, capsys):
    (templates_copy / "messages/en/phq9.email.html.j2").write_text("<p>{% if %}</p>")
    assert main(["templates", "check"]) != 0
    assert "en/phq9.email.*: syntax error" in capsys.readouterr().out


def test_templates_check_warns_about_ucs2_in_english_without_failing(templates_copy, capsys):
    (templates_copy / "messages/en/pickup_notice.sms.j2").write_text("{{ clinic_name }}: it\u2019s time.")
    assert main(["templates", "check"]) == 0
    assert "warning: en/pickup_notice.sms.j2: UCS-2 because of '\u2019'" in capsys.readouterr().out


def test_templates_check_skips_partials(templates_copy, capsys):
    (templates_copy / "messages/en/_footer.j2").write_text("{{ undefined_thing }}")
    assert main(["templates", "check"]) == 0


def test_every_english_template_has_a_spanish_one():
    missing = _templates("en") - _templates("es")
    assert not missing, f"no Spanish version of {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(_templates("en") - {"_safety.j2"}))
def test_spanish_template_uses_the_same_variables_as_english(name):
    env = environment(str(DEFAULT_TEMPLATES))

    def variables(lang):
        source = env.loader.get_source(env, f"messages/{lang}/{name}")[0]
        from jinja2 import meta

        return meta.find_undeclared_variables(env.parse(source))

    assert variables("es") == variables("en")


def _rendered_sms(settings, lang: str) -> dict[str, str]:
    ctx = sample_context(settings, lang)
    templates = MessageTemplates(settings.templates_dir)
    return {name: templates.sms(name, lang, ctx) for name in _sms_names(lang)}


@pytest.mark.parametrize("lang", ["en", "es"])
def test_no_sms_names_the_drug_the_diagnosis_or_the_treatment(settings, lang):
    for name in _sms_names(lang):
        if name.startswith("phq9_question"):
            continue  # the PHQ-9's own wording, sent only to patients who chose it by text
        source = (MESSAGES / lang / f"{name}.sms.j2").read_text()
        assert not FORBIDDEN.search(source), f"{lang}/{name}.sms.j2"
    for name, text in _rendered_sms(settings, lang).items():
        if not name.startswith("phq9_question"):
            assert not FORBIDDEN.search(text), f"{lang}/{name}: {text}"


def test_spanish_sms_stay_gsm7_and_within_two_segments(settings):
    for name, text in _rendered_sms(settings, "es").items():
        info = sms_info(text)
        assert info.encoding == "GSM-7" and info.segments <= 2, (name, info, text)


def test_spanish_sms_keep_the_english_safety_numbers_and_links(settings):
    en, es = _rendered_sms(settings, "en"), _rendered_sms(settings, "es")
    for name, text in en.items():
        for needle in ("988", "911", "Riverside Wellness Clinic", "(555) 555-0123", "https://"):
            if needle in text:
                assert needle in es[name], (name, needle)
    assert "CASA" in es["home_safe"] and "SI o NO" in es["ride_confirm"]  # keywords the reply parser knows


def test_spanish_emails_have_988_911_and_the_links(settings):
    ctx = sample_context(settings, "es")
    templates = MessageTemplates(settings.templates_dir)
    for path in (MESSAGES / "es").glob("*.email.txt.j2"):
        name = path.name[: -len(".email.txt.j2")]
        en, es = templates.email(name, "en", ctx), templates.email(name, "es", ctx)
        for needle in ("988", "911", "https://"):
            assert (needle in en.text) == (needle in es.text), (name, needle)
            assert (needle in en.html) == (needle in es.html), (name, needle)
        assert es.subject != en.subject and es.html.startswith('<!doctype html>\n<html lang="es">')


def test_spanish_phq9_question_keeps_the_official_words_without_forcing_ucs2(settings):
    ctx = sample_context(settings, "es")
    text = MessageTemplates(settings.templates_dir).sms(
        "phq9_question", "es", {**ctx, "number": 9, "question": "Pensamientos de que estaría mejor "
                                "muerto(a) o de lastimarse de alguna manera"})
    assert text.startswith("9/9: Pensamientos de que estaria mejor muerto(a) o de lastimarse de alguna manera.")
    assert "0 Ningun dia" in text and sms_info(text).encoding == "GSM-7"


def test_templates_dir_setting_is_what_the_check_reads(templates_copy, capsys):
    shutil.rmtree(templates_copy / "messages/es")
    (Path(templates_copy) / "messages/es").mkdir()
    assert main(["templates", "check"]) == 0
    assert "warning: es: no templates" in capsys.readouterr().out
