"""API keys: creation, lookup, revocation.

A key reads ``mrg_<key_id>_<secret>``: the recognisable prefix lets secret scanners and
log redaction find it, ``key_id`` locates the row without scanning, and the 256-bit
secret makes guessing hopeless. Only a SHA-256 of the whole key is stored — a slow
password hash buys nothing for a random 256-bit secret and would cost every request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morag_worker.protocol import KeyCreated, KeyInfo, Role
from morag_worker.server.db import Database

KEY_PREFIX = "mrg_"
#: How long a verified key is trusted from memory before the database is asked again;
#: bounds how long a revocation made by another server replica takes to bite.
AUTH_CACHE_TTL_S = 5.0
#: ``last_used_at`` is written at most this often per key, to keep auth off the write path.
TOUCH_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Caller:
    """Who is asking: the authenticated key's identity."""

    key_id: str
    user_id: str
    role: str
    pool: bool


class LastAdminKey(Exception):
    """Revoking this key would leave no usable admin key (409)."""


class AuthError(Exception):
    """The key is missing, malformed, unknown, revoked or expired (401)."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class _Cached:
    caller: Caller
    expires_at: float | None
    checked_at: float


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, _Cached] = {}
        #: The same, by key id: dashboard sessions name their key by id (sessions.py).
        self._by_id: dict[str, _Cached] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(
        self,
        user_id: str,
        role: Role,
        *,
        pool: bool = False,
        expires_days: float | None = None,
        name: str = "",
    ) -> KeyCreated:
        if pool and role != Role.worker:
            raise ValueError("pool: only a worker key can be a pool key")
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        expires_at = now + expires_days * 86400 if expires_days else None
        self.db.execute(
            "insert_key",
            key_id=key_id,
            prefix=key[: len(KEY_PREFIX) + len(key_id)],
            key_hash=_hash(key),
            user_id=user_id,
            role=role.value,
            pool=pool,
            name=name,
            created_at=now,
            expires_at=expires_at,
        )
        return KeyCreated(key=key, info=self.info(key_id))

    def info(self, key_id: str) -> KeyInfo:
        row = self.db.one("get_key", key_id=key_id)
        if row is None:
            raise KeyError(key_id)
        return _key_info(row)

    def list_keys(self) -> list[KeyInfo]:
        return [_key_info(row) for row in self.db.query("list_keys")]

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key. The last usable admin key cannot be revoked: nobody could manage
        keys afterwards (``LastAdminKey``)."""
        info = self.info(key_id)
        if info.role == Role.admin and info.revoked_at is None:
            row = self.db.one("count_active_admins", now=time.time()) or {"n": 0}
            if row["n"] <= 1:
                raise LastAdminKey(
                    "this is the last usable admin key; create another admin key before revoking it"
                )
        self.db.execute("revoke_key", key_id=key_id, now=time.time())
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v.caller.key_id != key_id}
            self._by_id.pop(key_id, None)
        return info if info.revoked_at else self.info(key_id)

    def verify(self, key: str) -> Caller:
        """Return the caller for a presented key, or raise :class:`AuthError`."""
        now = time.time()
        digest = _hash(key)
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached.checked_at < AUTH_CACHE_TTL_S:
            if cached.expires_at is not None and cached.expires_at <= now:
                raise AuthError("API key expired; ask an admin for a new one")
            return cached.caller
        caller, expires_at = self._verify_db(key, digest, now)
        with self._lock:
            self._cache[digest] = _Cached(caller, expires_at, now)
        return caller

    def _verify_db(self, key: str, digest: str, now: float) -> tuple[Caller, float | None]:
        parts = key.split("_")
        if not key.startswith(KEY_PREFIX) or len(parts) < 3:
            raise AuthError("malformed API key: expected 'mrg_<id>_<secret>'")
        row = self.db.one("get_key", key_id=parts[1])
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise AuthError("unknown API key")
        return self._usable(row, now), row["expires_at"]

    def caller_for(self, key_id: str) -> Caller:
        """The caller of a key known by id (a dashboard session's), while the key is
        usable; :class:`AuthError` once it is revoked, expired or gone."""
        now = time.time()
        with self._lock:
            cached = self._by_id.get(key_id)
        if cached is not None and now - cached.checked_at < AUTH_CACHE_TTL_S:
            if cached.expires_at is not None and cached.expires_at <= now:
                raise AuthError("API key expired; ask an admin for a new one")
            return cached.caller
        row = self.db.one("get_key", key_id=key_id)
        if row is None:
            raise AuthError("unknown API key")
        caller = self._usable(row, now)
        with self._lock:
            self._by_id[key_id] = _Cached(caller, row["expires_at"], now)
        return caller

    def _usable(self, row: dict[str, Any], now: float) -> Caller:
        """The caller of a key row that is neither revoked nor expired (else AuthError);
        records its use now and then."""
        if row["revoked_at"] is not None:
            raise AuthError("API key revoked")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise AuthError("API key expired; ask an admin for a new one")
        if now - self._touched.get(row["key_id"], 0.0) > TOUCH_INTERVAL_S:
            self._touched[row["key_id"]] = now
            self.db.execute("touch_key", key_id=row["key_id"], now=now)
        return Caller(
            key_id=row["key_id"], user_id=row["user_id"], role=row["role"], pool=bool(row["pool"])
        )

    def count(self) -> int:
        """Keys ever created (revoked ones included); also proves the database answers."""
        row = self.db.one("count_keys")
        return int(row["n"]) if row else 0

    def bootstrap_admin(self, data_dir: Path) -> Path | None:
        """On an empty database, create an admin key and write it to ``admin.key`` (0600).

        Returns the file's path when a key was created, else None.
        """
        row = self.db.one("count_keys")
        if row and row["n"]:
            return None
        created = self.create("admin", Role.admin, name="bootstrap admin")
        path = data_dir / "admin.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(created.key + "\n")
        os.chmod(path, 0o600)
        return path


def _key_info(row: dict[str, Any]) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        prefix=row["prefix"],
        user_id=row["user_id"],
        role=Role(row["role"]),
        pool=bool(row["pool"]),
        name=row["name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
