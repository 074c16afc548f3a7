"""The protocol file: the shipped default loads; a bad file is refused naming step and field."""

from datetime import timedelta

import pytest
import yaml

from worker.core.config import DEFAULT_TEMPLATES
from worker.core.protocol import ProtocolError, load_protocol, parse_duration, parse_protocol

GOOD_STEP = {"name": "ride_confirm", "anchor": "session_start", "offset": "-24h", "to": "patient",
             "channel": "preferred", "template": "ride_confirm", "expects": "yes_no"}


def test_default_protocol_loads_with_the_spec_steps():
    p = load_protocol(DEFAULT_TEMPLATES / "protocol.yaml", DEFAULT_TEMPLATES)
    assert [s.name for s in p.steps] == ["ride_confirm", "pickup_notice", "home_safe", "recovery_tips",
                                          "mood_day1", "mood_day3", "phq9_week1"]
    assert p.step("ride_confirm").offset == timedelta(hours=-24)
    assert p.step("ride_confirm").escalate_after == timedelta(hours=22)
    assert p.step("phq9_week1").offset == timedelta(days=7)
    assert p.quiet_hours.start.hour == 21 and p.quiet_hours.end.hour == 8


@pytest.mark.parametrize("text, expected", [
    ("24h", timedelta(hours=24)), ("-24h", timedelta(hours=-24)), ("1d2h", timedelta(days=1, hours=2)),
    ("90s", timedelta(seconds=90)), ("0s", timedelta(0)), ("1h30m", timedelta(minutes=90)),
])
def test_durations_parse(text, expected):
    assert parse_duration(text, signed=True) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "1w", "--2h", "2h-"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text, signed=True)


@pytest.mark.parametrize("change, message", [
    ({"anchor": "session_middle"}, "step 'ride_confirm', field 'anchor'"),
    ({"offset": "tomorrow"}, "step 'ride_confirm', field 'offset'"),
    ({"channel": "pigeon"}, "step 'ride_confirm', field 'channel'"),
    ({"to": "neighbour"}, "step 'ride_confirm', field 'to'"),
    ({"expects": "essay"}, "step 'ride_confirm', field 'expects'"),
    ({"escalate_after": "-2h"}, "step 'ride_confirm', field 'escalate_after'"),
    ({"expires_after": "soon"}, "step 'ride_confirm', field 'expires_after'"),
    ({"quiet_hours": "maybe"}, "step 'ride_confirm', field 'quiet_hours'"),
    ({"template": "no_such_template"}, "step 'ride_confirm', field 'template'"),
    ({"colour": "blue"}, "step 'ride_confirm', field 'colour'"),
    ({"template": None}, "step 'ride_confirm', field 'template'"),
])
def test_bad_step_is_refused_naming_step_and_field(change, message):
    step = {**GOOD_STEP, **change}
    step = {k: v for k, v in step.items() if v is not None}
    with pytest.raises(ProtocolError, match=message.replace("'", "'")):
        parse_protocol({"steps": [step]}, DEFAULT_TEMPLATES)


def test_escalation_only_where_silence_has_a_flag():
    mood = {**GOOD_STEP, "expects": "mood", "template": "mood_checkin", "escalate_after": "2h"}
    with pytest.raises(ProtocolError, match="field 'escalate_after'"):
        parse_protocol({"steps": [mood]})


def test_duplicate_step_names_are_refused():
    with pytest.raises(ProtocolError, match="step 'ride_confirm', field 'name': duplicate"):
        parse_protocol({"steps": [GOOD_STEP, GOOD_STEP]})


def test_driver_steps_are_sms_only():
    bad = {**GOOD_STEP, "to": "driver", "expects": "none", "channel": "email"}
    with pytest.raises(ProtocolError, match="field 'channel'"):
        parse_protocol({"steps": [bad]})


def test_bad_quiet_hours_are_refused():
    with pytest.raises(ProtocolError, match="field 'quiet_hours'"):
        parse_protocol({"quiet_hours": "late-early", "steps": [GOOD_STEP]})


def test_unreadable_yaml_is_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("steps: [\n")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(path)


def test_cli_refuses_to_start_on_a_bad_protocol(tmp_path, monkeypatch, capsys):
    from worker.cli import main

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"steps": [{**GOOD_STEP, "offset": "yesterday"}]}))
    monkeypatch.setenv("FOLLOWUP_PROTOCOL", str(path))
    assert main(["web"]) == 2
    err = capsys.readouterr().err
    assert "step 'ride_confirm', field 'offset'" in err and err.count("\n") == 1
