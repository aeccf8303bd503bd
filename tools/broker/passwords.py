"""Mosquitto password files, in the format `mosquitto_passwd` writes (Mosquitto 2.0):
``name:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>``.

Written here rather than by running mosquitto_passwd, so that the gateway host needs no
Mosquitto client tools and the file is written atomically in one go.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

# mosquitto_passwd's defaults: 101 PBKDF2 rounds, a 12-byte salt. The passwords generated here
# carry 192 random bits, so the round count is not what protects them.
ITERATIONS = 101
SALT_BYTES = 12


def new_password() -> str:
    """A random password: 192 bits, URL-safe base64 (no character a config file must escape)."""
    return secrets.token_urlsafe(24)


def password_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``$7$...`` entry Mosquitto checks a CONNECT's password against."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def parse_password_file(text: str) -> dict[str, str]:
    """name -> hash entry of an existing file (blank lines and comments skipped)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or ":" not in line:
            continue
        name, entry = line.split(":", 1)
        entries[name] = entry.strip()
    return entries


def render_password_file(entries: dict[str, str]) -> str:
    return "".join(f"{name}:{entry}\n" for name, entry in sorted(entries.items()))
