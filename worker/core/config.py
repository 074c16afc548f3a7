"""Settings: every configuration variable (docs/configuration.md), read once per process.

A missing or malformed value stops the process at start-up with one line naming the
variable (``ConfigError``), never a traceback deep inside a task.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The shipped templates and default protocol: `templates/` at the top of a source checkout, linked
# as worker/templates, and packaged at that place in the wheel, so both find it the same way.
DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class ConfigError(RuntimeError):
    """A configuration variable is missing or malformed; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = "sqlite:///aftercare.db"
    # Empty = the embedded broker (kombu's SQLAlchemy transport on a SQLite file).
    broker_url: str = ""
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_url: str | None = None
    twilio_max_mps: float = Field(default=1.0, gt=0)
    smtp_url: str | None = None
    mail_from: str | None = None
    public_base_url: str = "http://localhost:8000"
    followup_protocol: Path | None = None
    clinic_name: str = "the clinic"
    clinic_phone: str = ""
    clinic_timezone: str = "America/New_York"
    oncall_sms: str = ""
    oncall_email: str = ""
    dispatch_interval: float = Field(default=10.0, gt=0)
    secret_key: str | None = None
    templates_dir: Path = DEFAULT_TEMPLATES
    # Seconds a message may stay in `sending` before the tick treats its worker as dead.
    sending_timeout: float = Field(default=300.0, gt=0)
    # How long a reply-expecting step stays open for matching (and a PHQ-9 by SMS resumable).
    checkin_open_hours: float = Field(default=72.0, gt=0)

    @field_validator("clinic_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v

    @field_validator("public_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return v.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, v: str | None) -> str | None:
        if v and urlsplit(v).scheme not in ("smtp", "smtp+starttls", "smtps"):
            raise ValueError("scheme must be smtp://, smtp+starttls:// or smtps://")
        return v or None

    @field_validator("followup_protocol")
    @classmethod
    def _protocol(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @model_validator(mode="after")
    def _twilio(self) -> Settings:
        if self.twilio_account_sid and self.twilio_auth_token:
            if not (self.twilio_from_number or self.twilio_messaging_service_sid):
                raise ValueError(
                    "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID: one is required with Twilio credentials"
                )
        elif self.twilio_account_sid or self.twilio_auth_token:
            raise ValueError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: set both or neither")
        if self.smtp_url and not self.mail_from:
            raise ValueError("MAIL_FROM: required when SMTP_URL is set")
        return self

    # -- derived ---------------------------------------------------------------
    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def effective_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return "sqla+sqlite:///" + str(self.data_dir / "aftercare-broker.db")

    @property
    def data_dir(self) -> Path:
        """Where embedded-mode files live: next to the SQLite database, else the cwd."""
        if self.database_url.startswith("sqlite:///") and ":memory:" not in self.database_url:
            return Path(self.database_url[len("sqlite:///") :]).resolve().parent
        return Path.cwd()

    @property
    def protocol_path(self) -> Path:
        return self.followup_protocol or (self.templates_dir / "protocol.yaml")

    @property
    def oncall_sms_list(self) -> list[str]:
        return [x.strip() for x in self.oncall_sms.split(",") if x.strip()]

    @property
    def oncall_email_list(self) -> list[str]:
        return [x.strip() for x in self.oncall_email.split(",") if x.strip()]

    def signing_key(self) -> str:
        """SECRET_KEY, or one generated on first run and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / ".aftercare-secret-key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        self.secret_key = path.read_text().strip()
        return self.secret_key


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; raise ConfigError naming the variable.

    Called once per process by its composition root (CLI, app factory, Celery worker start);
    everything below receives the object, nothing reads the environment again.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "__root__"]
        name = loc[0].upper() if loc else ""
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        raise ConfigError(f"{name}: {msg}" if name else msg) from None
