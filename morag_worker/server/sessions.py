"""Dashboard sessions: a sign-in with an API key becomes an HttpOnly cookie.

The browser never keeps the key: the sign-in form sends it once, in an
``Authorization`` header, and gets back a cookie holding a fresh 256-bit token. The
server stores only a SHA-256 of the token, with the key it stands for and an expiry, so
a copy of the database opens no session. A session is only as good as its key: revoking
or expiring the key ends every session made with it (checked on each request, through
the key cache of :mod:`.auth`, so the answer names the reason), and signing out deletes
the row. Rows of ended sessions are deleted once expired, at the next sign-in.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's
page or link sends it) and ``Secure`` when the request came over HTTPS. Requests that
change something and carry only the cookie must also come from the dashboard's own
origin (:func:`same_origin`): SameSite treats every port and sibling host of a site as
the same site, the origin check does not.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import Request

from morag_worker.server.auth import AuthError, Caller, KeyStore
from morag_worker.server.db import Database

SESSION_COOKIE = "morag_session"
#: A sign-in lasts a working day: long enough not to nag, short enough that a forgotten
#: browser on a shared machine does not stay signed in for a week.
SESSION_TTL_S = 12 * 3600.0
#: Methods that change nothing; every other one needs :func:`same_origin` with a cookie.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database, keys: KeyStore) -> None:
        self.db = db
        self.keys = keys

    def create(self, caller: Caller) -> tuple[str, float]:
        """A new session for the caller's key: (the cookie's token, its expiry)."""
        now = time.time()
        token = secrets.token_urlsafe(32)
        expires_at = now + SESSION_TTL_S
        with self.db.transaction():
            self.db.execute("delete_expired_sessions", now=now)
            self.db.execute(
                "insert_session",
                session_hash=_hash(token),
                key_id=caller.key_id,
                now=now,
                expires_at=expires_at,
            )
        return token, expires_at

    def verify(self, token: str) -> Caller:
        """The caller a session cookie stands for; :class:`AuthError` when the session
        is unknown, signed out or expired, or its key no longer works."""
        row = self.db.one("get_session", session_hash=_hash(token), now=time.time())
        if row is None:
            raise AuthError("dashboard session expired or signed out; sign in again at /ui")
        return self.keys.caller_for(row["key_id"])

    def delete(self, token: str) -> None:
        self.db.execute("delete_session", session_hash=_hash(token))


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this server's origin.

    ``Sec-Fetch-Site`` is set by the browser itself and no page can change it; browsers
    too old to send it send ``Origin`` on every POST and DELETE, which must then name
    this host (and port). Neither header: not a browser request we can vouch for.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if not origin:
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
