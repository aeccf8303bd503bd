"""Bearer tokens of the HTTP API: made by `signet token create`, kept hashed in ``api_tokens``.

A token is 32 random bytes (base64url, prefixed ``signet_`` so that a leaked one is easy to
recognise); the database keeps only its SHA-256, so a copy of the database gives no access.
A request's token is hashed and looked up by that hash, then compared with
:func:`hmac.compare_digest`: the time taken does not depend on how much of a guess is right.
A revoked token is refused from the next request on (every request reads the table).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

from signet_gateway.store.faults import ENGINE_ERRORS, is_constraint
from signet_gateway.store.model import StoreError, now_ms
from signet_gateway.store.sqlite import Store

__all__ = ["PREFIX", "Token", "TokenError", "check", "create", "list_tokens", "revoke"]

PREFIX: Final = "signet_"
NAME_MAX: Final = 64


class TokenError(StoreError):
    """A token command was refused (a name in use, no such token, a bad name)."""


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    created_ms: int
    revoked_ms: int | None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def check_name(name: str) -> str:
    """A token name: 1..64 printable characters without leading or trailing blanks."""
    if not name or name != name.strip() or len(name) > NAME_MAX or not name.isprintable():
        raise TokenError(
            f"{name!r}: a token name must be 1 to {NAME_MAX} printable characters, without"
            " leading or trailing blanks"
        )
    return name


def create(conn: Any, name: str) -> str:
    """A new token for ``name`` (the only time it exists in clear: print it once)."""
    check_name(name)
    token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    try:
        with Store.over(conn).transaction():
            conn.execute(
                "INSERT INTO api_tokens (name, sha256, created_ms) VALUES (?, ?, ?)",
                (name, _digest(token), now_ms()),
            )
    except ENGINE_ERRORS as exc:
        if not is_constraint(exc):
            raise
        raise TokenError(
            f"a token named {name!r} is in force: revoke it first (signet token revoke"
            f" {name!r}) or choose another name"
        ) from None
    return token


def list_tokens(conn: Any) -> list[Token]:
    return [
        Token(*row)
        for row in conn.execute(
            "SELECT id, name, created_ms, revoked_ms FROM api_tokens ORDER BY created_ms, id"
        )
    ]


def revoke(conn: Any, name: str) -> Token:
    """Revoke the token in force under ``name``; TokenError if there is none."""
    with Store.over(conn).transaction():
        row = conn.execute(
            "SELECT id FROM api_tokens WHERE name = ? AND revoked_ms IS NULL", (name,)
        ).fetchone()
        if row is None:
            raise TokenError(f"no token named {name!r} is in force (see signet token list)")
        conn.execute("UPDATE api_tokens SET revoked_ms = ? WHERE id = ?", (now_ms(), row[0]))
    return next(t for t in list_tokens(conn) if t.id == row[0])


def check(conn: Any, presented: str) -> str | None:
    """The name of the token in force that ``presented`` is, else None."""
    wanted = _digest(presented)
    row = conn.execute(
        "SELECT name, sha256 FROM api_tokens WHERE sha256 = ? AND revoked_ms IS NULL", (wanted,)
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[1]), wanted):
        return None
    return str(row[0])
