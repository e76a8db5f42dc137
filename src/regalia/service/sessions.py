"""Web UI sessions, kept on the server (every process of a deployment reads the
same table, so logging out anywhere ends the session everywhere).

Logging in with an API key makes a random token (256 bits); the browser's
cookie holds the token, the database only its SHA-256 with the key's id and an
expiry :data:`SESSION_LIFETIME` after the login (fixed, not sliding: using the
UI does not extend it). A request's session is live while its row exists, has
not expired, and its API key is not revoked; logging out deletes the row.
Expired rows and those of revoked keys are swept at each login and at server
start.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from regalia.errors import Unauthenticated
from regalia.service.base import ServiceBase, hash_key
from regalia.service.views import Actor
from regalia.store.models import User
from regalia.store.repo import Repo

SESSION_LIFETIME = timedelta(hours=12)


class SessionMixin(ServiceBase):
    def open_web_session(self, api_key: str) -> tuple[str, datetime]:
        """Log a browser in with ``api_key``: the session token (for the cookie)
        and when the session ends.

        Raises:
            Unauthenticated: the key is refused; ``details.reason`` says why, as
                for the API (see :mod:`regalia.core.apikeys`).
        """
        token = secrets.token_urlsafe(32)
        key = api_key.strip()

        def fn(repo: Repo) -> datetime:
            key_id = repo.active_key_id(hash_key(key))
            if key_id is None:
                raise self._key_refusal(repo, key)
            now = self.now()
            repo.sweep_web_sessions(now)
            expires = now + SESSION_LIFETIME
            repo.add_web_session(hash_key(token), key_id, now, expires)
            return expires

        return token, self.db.write(fn)

    def web_session_user(self, token: str) -> int:
        """The id of the user whose live session ``token`` is (one indexed query).

        Raises:
            Unauthenticated: no such session, it expired, or its key was revoked.
        """
        now = self.now()
        user_id = self.db.read(lambda r: r.web_session_user(hash_key(token), now))
        if user_id is None:
            raise Unauthenticated("the session ended; log in again")
        return user_id

    def actor_of_user(self, user_id: int) -> Actor:
        """The user as an actor (roles and teams as stored now)."""

        def fn(repo: Repo) -> Actor:
            user = repo.get(User, user_id)
            if user is None:
                raise Unauthenticated("the user no longer exists")
            return self._actor(repo, user)

        return self.db.read(fn)

    def close_web_session(self, token: str) -> bool:
        """Log out: the session ends for every process (False: it had ended)."""
        return self.db.write(lambda r: r.delete_web_session(hash_key(token)))

    def sweep_web_sessions(self) -> int:
        """Delete expired sessions and those of revoked keys; how many went."""
        now = self.now()
        return self.db.write(lambda r: r.sweep_web_sessions(now))
