"""Secrets at rest: automation target URLs, access tokens and signing secrets are
stored encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag), because the
worker needs them back to send; API keys are only ever hashed.

The key comes from ``REGALIA_SECRET_KEY`` (a Fernet key: every server process
and worker of one deployment must share it), else from ``$REGALIA_HOME/secret.key``,
created (mode 0600) the first time it is needed. Because that file is one
node's, the database records the key's fingerprint when the first server starts
and refuses a server started with another key (``Service.check_secret_key``).
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.fernet import Fernet, InvalidToken

from regalia.config import Settings
from regalia.errors import IntegrityError, InvalidRequest

KEY_FILE = "secret.key"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self.key = key  # other uses derive their own keys from it (see server/ui/session.py)
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise InvalidRequest(
                "REGALIA_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes; "
                'make one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None

    @classmethod
    def for_settings(cls, settings: Settings) -> SecretBox:
        """The key of ``settings.secret_key``, else of the home's key file (made if missing)."""
        if settings.secret_key:
            return cls(settings.secret_key.encode())
        home = settings.home
        path = home / KEY_FILE
        try:
            return cls(path.read_bytes().strip())
        except FileNotFoundError:
            pass
        home.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return cls(path.read_bytes().strip())
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        return cls(key)

    @property
    def fingerprint(self) -> str:
        """A hex digest that tells keys apart without telling anything of the key."""
        return hmac.new(self.key, b"regalia secret key fingerprint v1", hashlib.sha256).hexdigest()

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise IntegrityError(
                "a stored secret cannot be decrypted: REGALIA_SECRET_KEY (or "
                f"$REGALIA_HOME/{KEY_FILE}) is not the key it was stored with"
            ) from None
