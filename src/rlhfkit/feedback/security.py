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


COMMON_PASSWORDS = frozenset(
    """
    password password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword 12345678 123456789
    1234567890 12345678910 123123123 11111111 00000000 88888888 87654321 qwertyuiop qwerty123 qwerty1234
    1q2w3e4r 1q2w3e4r5t 1qaz2wsx zaq12wsx qazwsxedc asdfghjkl asdfasdf abcd1234 abc12345 aa123456
    iloveyou iloveyou1 sunshine princess football baseball superman batman123 starwars whatever
    trustno1 letmein1 welcome1 welcome123 changeme changeme123 admin123 administrator adminadmin
    rootroot secret123 monkey123 dragon123 master123 computer internet michelle jennifer
    1234qwer q1w2e3r4 q1w2e3r4t5 a1b2c3d4 login123 test1234 testtest annotator rlhfkit rlhfkit123
    """.split()  # noqa: SIM905 (a block of words reads better than 70 quoted strings)
)
"""Passwords at the top of public breach lists (8 characters or more, compared case-insensitively):
NIST SP 800-63B section 5.1.1.2 asks to refuse known-compromised passwords. A short list on purpose;
a deployment that wants more can check against a full list before calling the app."""


def check_password_strength(password: str, name: str = "") -> None:
    """Reject passwords too short, all whitespace, common, or equal to the account name (there is
    never a default password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise Invalid("password must be at most 1024 characters")
    if not password.strip():
        raise Invalid("password must not be all whitespace")
    if password.strip().lower() in COMMON_PASSWORDS:
        raise Invalid("this password is on the list of the most common ones; choose another")
    if name and password.strip().lower() == name.lower():
        raise Invalid("password must not be the account name")


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
