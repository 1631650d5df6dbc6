"""Passwords, signed session cookies, CSRF tokens and safe upload names: the web app's security primitives.

Everything here uses the standard library only (``hashlib.scrypt``, ``hmac``, ``secrets``) so the security of the
workspace does not hang on an extra dependency, and each piece is small enough to read in one sitting.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import unicodedata
from pathlib import Path
from typing import Any

# --- passwords ----------------------------------------------------------------------------------------------

# scrypt cost parameters (RFC 7914): n=2**14, r=8, p=1 costs ~16 MB and ~50 ms here, the usual interactive-login
# choice. They are stored with each hash, so raising them later keeps old hashes verifiable.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
MIN_PASSWORD_LENGTH = 10


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt per call (so equal passwords hash differently)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; the comparison takes the same time wherever the bytes differ."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_unb64(expected)),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, _unb64(expected))


@functools.cache
def dummy_hash() -> str:
    """A real hash to check against when the user name is unknown, so a wrong name and a wrong password take the
    same time (no user enumeration by timing)."""
    return hash_password(secrets.token_urlsafe(16))


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must be at least {MIN_PASSWORD_LENGTH} characters long"
    if password.strip() != password:
        return "the password must not start or end with spaces"
    return None


# --- secret key ---------------------------------------------------------------------------------------------


def load_or_create_secret(path: Path) -> bytes:
    """The key that signs session cookies: read from ``path``, or created there (mode 0600) on first start.

    Kept in a file rather than generated per process so sign-ins survive a restart and several worker processes
    agree on it.
    """
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode("ascii")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    os.replace(tmp, path)
    return key


# --- signed session cookie ----------------------------------------------------------------------------------


class SessionSigner:
    """Signs and verifies the session cookie: ``base64(json).timestamp.hmac-sha256``.

    The cookie carries only the user id, the CSRF token and a session version; it is readable by the user (no
    secrets in it) but cannot be forged or altered without the key. Expired or tampered cookies read as empty.
    """

    def __init__(self, key: bytes, max_age_seconds: float) -> None:
        self._key = hashlib.sha256(b"qpm-session\x00" + key).digest()  # domain-separated from other uses
        self.max_age = max_age_seconds

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def dumps(self, data: dict[str, Any], *, now: float | None = None) -> str:
        """The cookie value for ``data``."""
        body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        stamp = str(int(now if now is not None else time.time()))
        payload = f"{body}.{stamp}"
        return f"{payload}.{self._mac(payload.encode('ascii'))}"

    def loads(self, value: str | None, *, now: float | None = None) -> dict[str, Any]:
        """The data in a cookie, or ``{}`` when it is missing, altered, malformed or older than ``max_age``."""
        if not value or value.count(".") != 2:
            return {}
        body, stamp, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{body}.{stamp}".encode("ascii", "replace"))):
            return {}
        try:
            issued = int(stamp)
            data = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return {}
        current = now if now is not None else time.time()
        if not isinstance(data, dict) or issued > current + 60 or current - issued > self.max_age:
            return {}
        return data


def new_csrf_token() -> str:
    """A fresh per-session CSRF token."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of the session's token with the one a form sent."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


# --- safe upload names --------------------------------------------------------------------------------------

_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
MAX_NAME_LENGTH = 120


def safe_filename(raw: str | None, fallback: str = "document") -> str:
    """A file name safe to create in a folder and to show: no folders, no ``..``, no control or reserved characters.

    Browsers send only the base name, but a hand-made request can send ``../../etc/passwd`` or ``C:\\x\\y``:
    everything up to the last slash or backslash is dropped, then characters that are unsafe on Windows or in
    a shell are replaced, leading dots are removed (no hidden files, no ``..``), Windows device names get a
    prefix, and the result is shortened while keeping its extension.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = _UNSAFE_CHARS.sub("_", name)
    # Other invisible or direction-changing characters (e.g. U+202E, which can disguise "evil.exe" as "exe.live").
    name = "".join("_" if unicodedata.category(ch) in ("Cf", "Cc", "Zl", "Zp") else ch for ch in name)
    name = name.strip().strip(".").strip()
    name = re.sub(r"\s+", " ", name)
    if not name or set(name) <= {"_", " ", "."}:
        name = fallback
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    if stem.lower() in _RESERVED or name.lower() in _RESERVED:
        stem = f"_{stem}"
    suffix = suffix[:16]
    stem = stem[: MAX_NAME_LENGTH - len(suffix) - 1] if suffix else stem[:MAX_NAME_LENGTH]
    return f"{stem}.{suffix}" if suffix else stem


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2).ext``, ``name (3).ext``... so two uploads with one name do not overwrite each other."""
    if name.casefold() not in taken:
        taken.add(name.casefold())
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    n = 2
    while True:
        candidate = f"{stem} ({n}).{suffix}" if suffix else f"{stem} ({n})"
        if candidate.casefold() not in taken:
            taken.add(candidate.casefold())
            return candidate
        n += 1
