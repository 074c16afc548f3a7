"""Configuration: every SPEC variable with its default; a bad value fails naming the variable."""

import pytest

from worker.cli import main
from worker.core.config import ConfigError, load_settings


def test_defaults_match_the_spec(monkeypatch):
    for k in ("DATABASE_URL", "PUBLIC_BASE_URL", "DISPATCH_INTERVAL", "CLINIC_TIMEZONE", "BROKER_URL"):
        monkeypatch.delenv(k, raising=False)
    s = load_settings()
    assert s.database_url == "sqlite:///aftercare.db"
    assert s.broker_url == "" and s.effective_broker_url.startswith("sqla+sqlite:///")
    assert s.twilio_max_mps == 1 and s.dispatch_interval == 10
    assert s.public_base_url == "http://localhost:8000"
    assert s.protocol_path.name == "protocol.yaml" and s.protocol_path.is_file()
    assert not s.twilio_enabled and s.smtp_url is None


@pytest.mark.parametrize("var, value", [
    ("DISPATCH_INTERVAL", "often"),
    ("DISPATCH_INTERVAL", "0"),
    ("TWILIO_MAX_MPS", "-1"),
    ("CLINIC_TIMEZONE", "Mars/Olympus"),
    ("PUBLIC_BASE_URL", "aftercare.example.org"),
    ("SMTP_URL", "http://mail.example.org"),
    ("FOLLOWUP_PROTOCOL", "/nonexistent/protocol.yaml"),
])
def test_malformed_value_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"^{var}: "):
        load_settings()


def test_twilio_needs_both_credentials(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        load_settings()


def test_twilio_needs_a_sender(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret")
    with pytest.raises(ConfigError, match="TWILIO_FROM_NUMBER"):
        load_settings()


def test_smtp_needs_a_sender_address(monkeypatch):
    monkeypatch.setenv("SMTP_URL", "smtp://127.0.0.1:2525")
    monkeypatch.delenv("MAIL_FROM", raising=False)
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        load_settings()


def test_cli_prints_one_line_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("DISPATCH_INTERVAL", "often")
    assert main(["init"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aftercare: configuration error: DISPATCH_INTERVAL:") and err.count("\n") == 1


def test_secret_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    first = load_settings().signing_key()
    assert len(first) > 40 and load_settings().signing_key() == first
    assert (tmp_path / ".aftercare-secret-key").stat().st_mode & 0o077 == 0
