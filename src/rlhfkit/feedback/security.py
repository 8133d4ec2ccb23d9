"""Passwords and tokens.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommended
parameter set). Session cookies and API tokens are 256-bit random strings; the database keeps
only their SHA-256, so a leaked database does not leak live sessions.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rlhfkit.feedback.errors import Invalid

MIN_PASSWORD_LENGTH = 8
"""Shortest accepted password."""

_HASHER = PasswordHasher()


def check_password_strength(password: str) -> None:
    """Reject passwords too short to be worth hashing (there is never a default password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise Invalid("password must be at most 1024 characters")


def hash_password(password: str) -> str:
    """Argon2id hash (salted, self-describing string)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when `password` matches; never raises on a wrong password or a malformed hash."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time of one verification, so unknown user names are not revealed by timing."""
    verify_password(_dummy_hash(), password)


def new_token() -> str:
    """A fresh random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database stores for a session or API token."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison for CSRF tokens."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
