"""W&B-style object ids: base64 of ``"Type:key"`` (the client treats them as
opaque strings, and some releases decode them; this is the shape they expect)."""

from __future__ import annotations

import base64
import binascii

from regalia.core.names import MAX_ID
from regalia.errors import InvalidRequest


def encode_id(type_: str, key: int | str) -> str:
    return base64.b64encode(f"{type_}:{key}".encode()).decode()


def decode_id(value: str, type_: str) -> str:
    """The key of an id made by :func:`encode_id` for ``type_``.

    Raises:
        InvalidRequest: not such an id.
    """
    try:
        text = base64.b64decode(value.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(f"{value!r} is not a {type_} id of this server") from None
    kind, _, key = text.partition(":")
    if kind != type_ or not key:
        raise InvalidRequest(f"{value!r} is not a {type_} id of this server")
    return key


def decode_int_id(value: str, type_: str) -> int:
    """The number of an id made by :func:`encode_id` for ``type_`` (1 to MAX_ID).

    Raises:
        InvalidRequest: not such an id.
    """
    key = decode_id(value, type_)
    if not (key.isascii() and key.isdigit()) or not 0 < int(key) <= MAX_ID:
        raise InvalidRequest(f"{value!r} is not a {type_} id of this server")
    return int(key)
