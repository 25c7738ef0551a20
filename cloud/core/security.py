"""Password hashing and opaque bearer tokens."""

import functools
import hashlib
import secrets

import bcrypt

# bcrypt ignores (or, from bcrypt 5, refuses) bytes past the 72nd, so longer passwords are refused up front.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_CHARS = 8
TOKEN_BYTES = 32
BCRYPT_ROUNDS = 12


def hash_password(password: str) -> str:
    """A bcrypt hash of `password`, salt included."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    """True if `password` matches `password_hash`."""
    data = password.encode()
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(data, password_hash.encode())
    except ValueError:
        return False


@functools.cache
def dummy_password_hash() -> str:
    """A hash to check against when the user does not exist, so that a login takes as long either way."""
    return hash_password(secrets.token_urlsafe(16))


def password_problem(password: str) -> str | None:
    """Why `password` cannot be used, or None if it can."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"password must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return f"password must fit in {MAX_PASSWORD_BYTES} bytes of UTF-8"
    return None


def new_token() -> str:
    """A fresh random bearer token, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is stored; tokens are random, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()
