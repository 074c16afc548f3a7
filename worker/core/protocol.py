"""The follow-up protocol (docs/protocol.md): load, validate, and refuse a bad file naming step and field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path

import yaml

from .models import Expects, Recipient

ANCHORS = ("session_start", "session_end")
RECIPIENTS = ("patient", "driver")
CHANNELS = ("sms", "email", "preferred", "both")
EXPECTS = tuple(e.value for e in Expects)
_DURATION = re.compile(r"^([+-])?((?:\d+[smhd])+)$")
_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ProtocolError(ValueError):
    """The protocol file is invalid; the message names the step and the field."""


def parse_duration(text: str, *, signed: bool = False) -> timedelta:
    """'1d2h', '90s', '-24h' -> timedelta. Units s m h d, combinable."""
    s = str(text).strip().replace(" ", "")
    m = _DURATION.match(s)
    if not m or (m.group(1) and not signed):
        raise ValueError(f"{text!r} is not a duration like 2h, 1d2h, 90s" + (" (signed)" if signed else ""))
    secs = sum(int(n) * _UNITS[u] for n, u in _PART.findall(m.group(2)))
    return timedelta(seconds=-secs if m.group(1) == "-" else secs)


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        if not text:
            return None
        m = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
        if not m:
            raise ValueError(f"{text!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = map(int, m.groups())
        if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60) or (h1, m1) == (h2, m2):
            raise ValueError(f"{text!r} is not a valid window")
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # spans midnight


@dataclass(frozen=True)
class Step:
    name: str
    anchor: str
    offset: timedelta
    to: Recipient
    channel: str
    template: str
    expects: Expects = Expects.none
    escalate_after: timedelta | None = None
    quiet_hours: bool = True
    expires_after: timedelta | None = None


@dataclass(frozen=True)
class Protocol:
    steps: tuple[Step, ...]
    quiet_hours: QuietHours | None

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


_FIELDS = {
    "name",
    "anchor",
    "offset",
    "to",
    "channel",
    "template",
    "expects",
    "escalate_after",
    "quiet_hours",
    "expires_after",
}


def _step(i: int, raw: object, templates_dir: Path | None) -> Step:
    label = f"step {i + 1}"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{label}: must be a mapping")
    if isinstance(raw.get("name"), str):
        label = f"step {raw['name']!r}"

    def fail(field: str, why: str):
        raise ProtocolError(f"{label}, field {field!r}: {why}")

    unknown = set(raw) - _FIELDS
    if unknown:
        fail(sorted(unknown)[0], "unknown field")
    for field in ("name", "anchor", "offset", "to", "channel", "template"):
        if raw.get(field) in (None, ""):
            fail(field, "required")
    name = str(raw["name"])
    if not _NAME.match(name):
        fail("name", "lower-case letters, digits and _ only")
    for field, allowed in (("anchor", ANCHORS), ("to", RECIPIENTS), ("channel", CHANNELS), ("expects", EXPECTS)):
        value = raw.get(field, "none" if field == "expects" else None)
        if value not in allowed:
            fail(field, f"{value!r} is not one of {', '.join(allowed)}")
    try:
        offset = parse_duration(raw["offset"], signed=True)
    except ValueError as exc:
        fail("offset", str(exc))
    durations = {}
    for field in ("escalate_after", "expires_after"):
        if raw.get(field) is not None:
            try:
                durations[field] = parse_duration(raw[field])
            except ValueError as exc:
                fail(field, str(exc))
            if durations[field] <= timedelta(0):
                fail(field, "must be positive")
    if not isinstance(raw.get("quiet_hours", True), bool):
        fail("quiet_hours", "must be true or false")
    if raw["to"] == "driver" and raw["channel"] != "sms":
        fail("channel", "a driver has only a phone: use sms")
    if raw["to"] == "driver" and raw.get("expects", "none") != "none":
        fail("expects", "drivers are never asked anything")
    if durations.get("escalate_after") and raw.get("expects", "none") not in ("yes_no", "home"):
        fail("escalate_after", "only for a yes_no or home step (silence raises ride_unconfirmed / not_home)")
    template = str(raw["template"])
    if not _NAME.match(template):
        fail("template", "lower-case letters, digits and _ only")
    if templates_dir is not None:
        en = templates_dir / "messages" / "en"
        needed = []
        if raw["channel"] in ("sms", "preferred", "both"):
            needed.append(f"{template}.sms.j2")
        if raw["channel"] in ("email", "preferred", "both"):
            needed += [f"{template}.email.txt.j2", f"{template}.email.html.j2"]
        missing = [n for n in needed if not (en / n).is_file()]
        if missing:
            fail("template", f"no template {missing[0]} in {en}")
    return Step(
        name=name,
        anchor=raw["anchor"],
        offset=offset,
        to=Recipient(raw["to"]),
        channel=raw["channel"],
        template=template,
        expects=Expects(raw.get("expects", "none")),
        escalate_after=durations.get("escalate_after"),
        quiet_hours=raw.get("quiet_hours", True),
        expires_after=durations.get("expires_after"),
    )


def parse_protocol(data: object, templates_dir: Path | None = None) -> Protocol:
    if not isinstance(data, dict):
        raise ProtocolError("protocol: the file must be a mapping with 'steps'")
    unknown = set(data) - {"quiet_hours", "steps"}
    if unknown:
        raise ProtocolError(f"protocol, field {sorted(unknown)[0]!r}: unknown field")
    try:
        quiet = QuietHours.parse(str(data.get("quiet_hours", "") or ""))
    except ValueError as exc:
        raise ProtocolError(f"protocol, field 'quiet_hours': {exc}") from None
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ProtocolError("protocol, field 'steps': a non-empty list is required")
    steps = [_step(i, raw, templates_dir) for i, raw in enumerate(raw_steps)]
    seen: set[str] = set()
    for s in steps:
        if s.name in seen:
            raise ProtocolError(f"step {s.name!r}, field 'name': duplicate step name")
        seen.add(s.name)
    return Protocol(steps=tuple(steps), quiet_hours=quiet)


def load_protocol(path: Path, templates_dir: Path | None = None) -> Protocol:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProtocolError(f"protocol file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"protocol file {path}: not valid YAML ({exc})") from None
    return parse_protocol(data, templates_dir)
