"""API keys: their format, and why one is refused.

A key is ``rg_<tag>_<secret>``: ``<tag>`` is six lowercase letters and digits
naming the store that issued it (one per database, see
:class:`~regalia.store.models.StoreIdentity`), ``<secret>`` 40 letters and
digits (no ``-``: the official W&B client keeps only what follows the first
one). The store keeps the key's SHA-256 and its first :data:`PREFIX_LENGTH`
characters (``rg_<tag>_`` and six of the secret), which lists and revocations
show. Keys issued before tags, ``rg_`` and 40 URL-safe characters, keep working.

A refused key gets one of four reasons (``details.reason`` of the 401):
``revoked`` (it was a key of this store), ``other_server`` (its tag is not this
store's), ``unknown`` (this store's tag, or an older key, and no such key) and
``malformed`` (not a Regalia key at all). The answer never says whose key it was.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from datetime import datetime

from regalia.errors import Unauthenticated

KEY_PREFIX = "rg_"
TAG_LENGTH = 6
SECRET_LENGTH = 40
PREFIX_LENGTH = 16
_TAG_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_TAGGED = re.compile(r"rg_([a-z0-9]{6})_[A-Za-z0-9]{40}")
_UNTAGGED = re.compile(r"rg_[A-Za-z0-9_-]{40}")  # keys issued before tags (issue 13)
SHAPE = "rg_<6 letters or digits>_<40 letters or digits>"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_tag() -> str:
    """A random store tag: six lowercase letters and digits."""
    return "".join(secrets.choice(_TAG_ALPHABET) for _ in range(TAG_LENGTH))


def new_api_key(tag: str) -> str:
    """A new key of the store tagged ``tag``."""
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{KEY_PREFIX}{tag}_{secret}"


def key_prefix(key: str) -> str:
    """What the store keeps in clear: ``rg_<tag>_`` and six characters of the secret."""
    return key[:PREFIX_LENGTH]


def key_tag(key: str) -> str | None:
    """The tag of a key in the current format, else None."""
    found = _TAGGED.fullmatch(key)
    return found.group(1) if found else None


def refusal(key: str, *, store_tag: str | None, revoked_at: datetime | None) -> Unauthenticated:
    """Why ``key`` is refused, as the error to raise (see the module docstring).

    Args:
        key: the key as sent (stripped).
        store_tag: this store's tag (None: it has issued no tagged key yet).
        revoked_at: when, if the key is one of this store's revoked keys.
    """
    if revoked_at is not None:
        return Unauthenticated(
            f"this API key was revoked on {revoked_at:%Y-%m-%d %H:%M} UTC: its user needs a "
            "new key (an org admin makes one with 'regalia key create')",
            reason="revoked",
            revoked_at=revoked_at.isoformat(),
        )
    tag = key_tag(key)
    if tag is not None and tag != store_tag:
        return Unauthenticated(
            f"this key was made by another Regalia server or an earlier store (tag {tag}); "
            f"this server is tag {store_tag or '(none yet)'}",
            reason="other_server",
            key_tag=tag,
            server_tag=store_tag,
        )
    if tag is not None:
        return Unauthenticated(
            "this server has no such API key (a typo, or a key that was deleted)",
            reason="unknown",
        )
    if _UNTAGGED.fullmatch(key):
        return Unauthenticated(
            "this server has no such API key (a typo, a deleted key, or an older key of "
            "another server)",
            reason="unknown",
        )
    return Unauthenticated(
        f"this is not a Regalia API key (they look like {SHAPE})", reason="malformed"
    )


def what_to_run(reason: str, base_url: str) -> str:
    """The command that gets a refused client going again, for each reason."""
    login = f"regalia login --base-url {base_url} --api-key KEY"
    if reason == "revoked":
        return f"then log in with the new key: {login}"
    if reason == "other_server":
        return f"log in with a key from this server: {login}"
    return f"check the key, or log in with another: {login}"
