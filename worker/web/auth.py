"""API tokens (only a SHA-256 hash is stored) and clinician passwords (scrypt)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.models import ApiToken, Clinician


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Session, name: str, now: datetime) -> str:
    token = "act_" + secrets.token_urlsafe(32)
    db.add(ApiToken(name=name, token_hash=hash_token(token), created_at=now))
    db.flush()
    return token


def check_token(db: Session, token: str, now: datetime) -> ApiToken | None:
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = now
    return row


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
    return hmac.compare_digest(got.hex(), digest)


def add_clinician(db: Session, email: str, password: str, now: datetime) -> Clinician:
    email = email.strip().lower()
    if "@" not in email:
        raise ValueError("EMAIL: not an email address")
    if len(password) < 10:
        raise ValueError("password: at least 10 characters")
    if db.scalar(select(Clinician).where(Clinician.email == email)):
        raise ValueError(f"EMAIL: a clinician {email} already exists")
    user = Clinician(email=email, password_hash=hash_password(password), created_at=now)
    db.add(user)
    db.flush()
    return user
