"""Jinja2 message templates: messages/<lang>/<name>.sms.j2 / .email.txt.j2 / .email.html.j2.

StrictUndefined: a typo in a template fails loudly at render, never sends "Hi ,".
A language without a template falls back to English.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, select_autoescape

LANGUAGES = ("en", "es")

# GSM 03.38 basic set; the extension set costs two septets each.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" | "UCS-2"
    chars: int
    segments: int


def sms_info(text: str) -> SmsInfo:
    """Encoding and segment count as the carrier sees it."""
    if all(c in GSM7_BASIC or c in GSM7_EXT for c in text):
        units = sum(2 if c in GSM7_EXT else 1 for c in text)
        single, multi, enc = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, multi, enc = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    return SmsInfo(enc, len(text), segments)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def environment(templates_dir: Path | str) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _pick(env: Environment, name: str, lang: str, suffix: str) -> Template:
    for candidate in dict.fromkeys((lang, "en")):
        try:
            return env.get_template(f"messages/{candidate}/{name}.{suffix}")
        except TemplateNotFound:
            continue
    raise TemplateNotFound(f"messages/{lang}/{name}.{suffix}")


_PLAIN = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u00a0": " ",
    "\u2026": "...",
}


def fold_to_gsm7(text: str) -> str:
    """Replace characters outside GSM-7 by their nearest GSM-7 form (a for á, ' for ’).

    Used only when a text would otherwise take more than two UCS-2 segments: Spanish readers
    read "dias" fine; a third segment (or a split question) helps no one.
    """
    out = []
    for c in text:
        if c in GSM7_BASIC or c in GSM7_EXT:
            out.append(c)
        elif c in _PLAIN:
            out.append(_PLAIN[c])
        else:
            base = "".join(ch for ch in unicodedata.normalize("NFKD", c) if not unicodedata.combining(ch))
            out.append(base if base and all(ch in GSM7_BASIC for ch in base) else c)
    return "".join(out)


class MessageTemplates:
    """The clinic's message templates, loaded once per process (Jinja caches compiled templates)."""

    def __init__(self, templates_dir: Path | str):
        self.dir = Path(templates_dir)
        self.env = environment(self.dir)

    def sms(self, name: str, lang: str, context: dict[str, Any]) -> str:
        """One SMS, whitespace folded; GSM-7 look-alikes when UCS-2 would take more than two segments."""
        text = " ".join(_pick(self.env, name, lang, "sms.j2").render(**context).split())
        if sms_info(text).segments > 2:
            text = fold_to_gsm7(text)
        return text

    def email(self, name: str, lang: str, context: dict[str, Any]) -> RenderedEmail:
        """Subject (the text part's first line, "Subject: ..."), text and HTML parts."""
        text = _pick(self.env, name, lang, "email.txt.j2").render(**context).strip() + "\n"
        html_body = _pick(self.env, name, lang, "email.html.j2").render(**context).strip()
        subject = ""
        first, _, rest = text.partition("\n")
        if first.lower().startswith("subject:"):
            subject, text = first.split(":", 1)[1].strip(), rest.lstrip("\n")
        html = f'<!doctype html>\n<html lang="{lang}"><body>\n{html_body}\n</body></html>\n'
        return RenderedEmail(subject=subject or name.replace("_", " "), text=text, html=html)
