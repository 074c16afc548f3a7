"""`aftercare templates check`: render every message template in every language, before a patient sees it.

Templates are the clinic's to edit, so a typo or an overlong SMS must be caught by a command,
not by a failed send. Every ``messages/<lang>/*.j2`` (``_*`` partials excepted) is rendered
with generous, realistic sample data (a long-ish first name, the clinic's name and phone,
links exactly like the real signed ones); templates that show a PHQ-9 question are rendered
once per item, and the longest counts.

Exit status 1 when any template fails to render (a missing variable is an error, named with
the template) or any SMS needs more than 2 segments. Warnings (not failures): an English SMS
in UCS-2 (a curly quote or similar crept in), a template missing in a language (English is
used instead), a language with no templates at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from jinja2 import Environment, TemplateSyntaxError, UndefinedError, meta

from ..clinical import phq9
from ..core.config import Settings
from ..core.models import Expects
from ..outbound import templating
from ..outbound.links import links_for
from ..outbound.rendering import local_date_text, local_time_text
from ..outbound.templating import LANGUAGES, MessageTemplates, sms_info

MAX_SEGMENTS = 2
SAMPLE_MESSAGE_ID = 987654
SAMPLE_FIRST_NAME = "Maximiliano"
SAMPLE_DRIVER = "Alexandra"
SAMPLE_CLINIC = "Riverside Wellness Clinic"
SAMPLE_PHONE = "(555) 555-0123"
SMS_SUFFIX = ".sms.j2"
EMAIL_SUFFIXES = (".email.txt.j2", ".email.html.j2")


@dataclass
class SmsRow:
    lang: str
    name: str
    encoding: str
    chars: int
    segments: int
    note: str = ""


def _phq9(lang: str) -> tuple[str, list[str], list[str]]:
    """(stem, items, answers) in this language, from the project's PHQ-9 wording."""
    key = lang if lang in phq9.ITEMS else "en"
    return phq9.STEM[key], list(phq9.ITEMS[key]), list(phq9.ANSWERS[key])


def _settings_for_links(settings: Settings) -> Settings:
    # A check must not create the secret-key file as a side effect; link length does not depend on the key.
    if settings.secret_key:
        return settings
    return settings.model_copy(update={"secret_key": "templates-check-sample-key"})


def sample_context(settings: Settings, lang: str) -> dict[str, Any]:
    """Everything any template may use, with realistic (long-ish) values."""
    link_settings = _settings_for_links(settings)
    links: dict[str, Any] = {}
    for expects in (Expects.yes_no, Expects.home, Expects.mood, Expects.phq9):
        links.update(links_for(link_settings, SAMPLE_MESSAGE_ID, expects))
    clinic = settings.clinic_name if settings.clinic_name and settings.clinic_name != "the clinic" else SAMPLE_CLINIC
    start = datetime(2027, 10, 30, 14, 30, tzinfo=UTC)  # a Saturday ("sáb"), two-digit day and hour
    stem, items, answers = _phq9(lang)
    base = settings.public_base_url
    return {
        "clinic_name": clinic,
        "clinic_phone": settings.clinic_phone or SAMPLE_PHONE,
        "base_url": base,
        "first_name": SAMPLE_FIRST_NAME,
        "driver_name": SAMPLE_DRIVER,
        "start_local": local_time_text(start, "America/New_York", lang),
        "start_date": local_date_text(start, "America/New_York", lang),
        "links": links,
        "stem": stem,
        "answers": answers,
        "question": max(items, key=len),
        "item": items.index(max(items, key=len)) + 1,
        "number": items.index(max(items, key=len)) + 1,
        "total": 9,
        "score": 10,
        "kind": "crisis",
        "flag_url": f"{base}/flags/12345",
        "step": "mood_day1",
        "reply": "sample reply",
    }


def _variables(env: Environment, path: str) -> set[str]:
    assert env.loader is not None
    source = env.loader.get_source(env, path)[0]
    return meta.find_undeclared_variables(env.parse(source))


def _render_sms_variants(templates: MessageTemplates, lang: str, name: str, ctx: dict[str, Any]) -> tuple[str, str]:
    """(longest rendering, note). Templates showing a PHQ-9 question are tried with each item."""
    path = f"messages/{lang}/{name}{SMS_SUFFIX}"
    variants = [ctx]
    note = ""
    if "question" in _variables(templates.env, path):
        _, items, _ = _phq9(lang)
        variants = [{**ctx, "question": q, "number": i, "item": i} for i, q in enumerate(items, 1)]
    texts = [(templates.sms(name, lang, v), v.get("number")) for v in variants]
    text, number = max(texts, key=lambda t: (sms_info(t[0]).segments, len(t[0])))
    if len(variants) > 1:
        note = f"longest of {len(variants)} items: item {number}"
    return text, note


def _names(directory: Path) -> tuple[list[str], list[str]]:
    sms: list[str] = []
    email: list[str] = []
    if not directory.is_dir():
        return sms, email
    for path in sorted(directory.iterdir()):
        n = path.name
        if n.startswith("_") or not n.endswith(".j2"):
            continue
        if n.endswith(SMS_SUFFIX):
            sms.append(n[: -len(SMS_SUFFIX)])
        elif n.endswith(EMAIL_SUFFIXES[0]):
            email.append(n[: -len(EMAIL_SUFFIXES[0])])
        elif (
            n.endswith(EMAIL_SUFFIXES[1])
            and not (directory / (n[: -len(EMAIL_SUFFIXES[1])] + EMAIL_SUFFIXES[0])).exists()
        ):
            email.append(n[: -len(EMAIL_SUFFIXES[1])])  # reported: its text part is missing
    return sms, email


def _describe(exc: Exception) -> str:
    if isinstance(exc, UndefinedError):
        return f"undefined variable: {exc.message}"
    if isinstance(exc, TemplateSyntaxError):
        where = f"{exc.filename or exc.name or ''}:{exc.lineno}"
        return f"syntax error at {where}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def check_templates(settings: Settings, out: TextIO) -> int:
    """Render everything; print the SMS table, the email list, warnings, errors and a summary."""
    templates_dir = Path(settings.templates_dir)
    templates = MessageTemplates(templates_dir)
    errors: list[str] = []
    warnings: list[str] = []
    sms_rows: list[SmsRow] = []
    email_rows: list[tuple[str, str, str]] = []
    names = {lang: _names(templates_dir / "messages" / lang) for lang in LANGUAGES}

    for lang in LANGUAGES:
        sms_names, email_names = names[lang]
        if not sms_names and not email_names:
            warnings.append(f"{lang}: no templates in {templates_dir / 'messages' / lang}")
            continue
        ctx = sample_context(settings, lang)
        for name in sms_names:
            try:
                text, note = _render_sms_variants(templates, lang, name, ctx)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the check
                errors.append(f"{lang}/{name}{SMS_SUFFIX}: {_describe(exc)}")
                continue
            info = sms_info(text)
            row = SmsRow(lang, name, info.encoding, info.chars, info.segments, note)
            sms_rows.append(row)
            if info.segments > MAX_SEGMENTS:
                errors.append(
                    f"{lang}/{name}{SMS_SUFFIX}: {info.segments} segments ({info.chars} chars, "
                    f"{info.encoding}); at most {MAX_SEGMENTS} allowed"
                )
            if lang == "en" and info.encoding == "UCS-2":
                odd = sorted({c for c in text if c not in templating.GSM7_BASIC and c not in templating.GSM7_EXT})
                warnings.append(f"en/{name}{SMS_SUFFIX}: UCS-2 because of {' '.join(repr(c) for c in odd)}")
        for name in email_names:
            missing = [s for s in EMAIL_SUFFIXES if not (templates_dir / "messages" / lang / f"{name}{s}").exists()]
            if missing:
                errors.append(f"{lang}/{name}: missing {', '.join(name + s for s in missing)}")
                continue
            try:
                rendered = templates.email(name, lang, ctx)
            except Exception as exc:  # noqa: BLE001 - reported, like the SMS above
                errors.append(f"{lang}/{name}.email.*: {_describe(exc)}")
                continue
            email_rows.append((lang, name, rendered.subject))

    if "en" in names:
        en_sms, en_email = names["en"]
        for lang in LANGUAGES:
            if lang == "en" or not any(names[lang]):
                continue
            have_sms, have_email = names[lang]
            for name in sorted(set(en_sms) - set(have_sms)):
                warnings.append(f"{lang}/{name}{SMS_SUFFIX}: missing, English is used")
            for name in sorted(set(en_email) - set(have_email)):
                warnings.append(f"{lang}/{name}.email.*: missing, English is used")

    _print_report(out, templates_dir, sms_rows, email_rows, warnings, errors)
    return 1 if errors else 0


def _table(out: TextIO, header: Iterable[str], rows: list[tuple], right: set[int]) -> None:
    header = list(header)
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header)]

    def line(cells) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out.write(line(header) + "\n")
    out.write(line("-" * w for w in widths) + "\n")
    for r in rows:
        out.write(line(r) + "\n")


def _print_report(
    out: TextIO,
    templates_dir: Path,
    sms_rows: list[SmsRow],
    email_rows: list[tuple[str, str, str]],
    warnings: list[str],
    errors: list[str],
) -> None:
    out.write(
        f"Templates in {templates_dir / 'messages'} (sample data: first name {SAMPLE_FIRST_NAME!r}, "
        f"real-length signed links)\n\n"
    )
    out.write("SMS\n")
    _table(
        out,
        ("language", "template", "encoding", "chars", "segments", ""),
        [
            (
                r.lang,
                r.name,
                r.encoding,
                r.chars,
                r.segments if r.segments <= MAX_SEGMENTS else f"{r.segments} !",
                r.note,
            )
            for r in sms_rows
        ],
        right={3, 4},
    )
    out.write("\nEmail\n")
    _table(out, ("language", "template", "subject"), email_rows, right=set())
    if warnings:
        out.write("\nWarnings\n")
        for w in warnings:
            out.write(f"  warning: {w}\n")
    if errors:
        out.write("\nErrors\n")
        for e in errors:
            out.write(f"  error: {e}\n")
    over = sum(1 for r in sms_rows if r.segments > MAX_SEGMENTS)
    verdict = "FAILED" if errors else "OK"
    out.write(
        f"\ntemplates check {verdict}: {len(sms_rows)} SMS ({over} over {MAX_SEGMENTS} segments), "
        f"{len(email_rows)} email rendered; {len(errors)} error(s), {len(warnings)} warning(s)\n"
    )
    out.flush()
