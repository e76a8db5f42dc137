"""Rows written before names were normalized and JSON was strict (issue 12), made
to follow today's rules. Run once by migration 0006; each step is idempotent.

- :func:`rekey_names`: keys of aliases, protected aliases, registries and the
  history's alias column were ``name.lower()``; they are now
  :func:`~regalia.core.names.name_key` (NFKC, case folded). The two agree on
  every ASCII name, so only rows with another character are read, and each gets
  the new key and its name in NFKC (``ｐｒｏｄ`` becomes ``prod``, and so counts
  as protected when ``prod`` is). A row whose new key another row of its scope
  already has keeps its old key (and is logged): both stay visible, and
  removing the look-alike by its exact name still works.
- :func:`repair_json`: SQLite kept ``NaN`` and ``Infinity`` in JSON columns
  (PostgreSQL refused them), which made its JSON functions fail on every
  metadata filter; such values become ``null``.
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from regalia.core.names import name_key

LOG = logging.getLogger(__name__)

# (table, id columns, scope column of the unique key or None, name column, key column)
_KEYED = (
    ("aliases", "id", "collection_id", "name", "name_key"),
    ("registries", "id", "org_id", "name", "name_key"),
    ("protected_aliases", "registry_id", "registry_id", "name", "name_key"),
    ("history", "id", None, "alias", "alias_key"),
)
_JSON_COLUMNS = (("versions", "id", "metadata"), ("deliveries", "id", "variables"))


def _non_ascii(conn: Connection, column: str) -> str:
    """A condition true for text with a character outside printable ASCII."""
    if conn.dialect.name == "postgresql":
        return f"{column} ~ '[^ -~]'"
    return f"{column} GLOB '*[^ -~]*'"


def rekey_names(conn: Connection) -> int:
    """Give every non-ASCII name its NFKC form and today's key; returns how many rows changed."""
    changed = 0
    for table, ident, scope, name_col, key_col in _KEYED:
        scope_col = scope or "NULL"
        rows = conn.execute(
            text(
                f"SELECT {ident}, {scope_col}, {name_col}, {key_col} FROM {table} "
                f"WHERE {name_col} IS NOT NULL AND {_non_ascii(conn, name_col)}"
            )
        ).all()
        for row_id, scope_id, name, old_key in rows:
            new_key, new_name = name_key(name), unicodedata.normalize("NFKC", name)
            if new_key == old_key and new_name == name:
                continue
            if scope is not None and new_key != old_key:
                taken = conn.execute(
                    text(f"SELECT 1 FROM {table} WHERE {scope} = :s AND {key_col} = :k"),
                    {"s": scope_id, "k": new_key},
                ).first()
                if taken is not None:
                    LOG.warning(
                        "%s %r keeps its old key: %r is taken in its %s",
                        table,
                        name,
                        new_key,
                        scope,
                    )
                    continue
            where = (
                f"{scope} = :s AND {key_col} = :old"
                if table == "protected_aliases"
                else (f"{ident} = :id")
            )
            conn.execute(
                text(f"UPDATE {table} SET {name_col} = :name, {key_col} = :key WHERE {where}"),
                {"name": new_name, "key": new_key, "s": scope_id, "old": old_key, "id": row_id},
            )
            changed += 1
    return changed


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def repair_json(conn: Connection) -> int:
    """SQLite: JSON column values that are not JSON (NaN, Infinity) with those
    numbers as null; returns how many rows changed. PostgreSQL never stored them."""
    if conn.dialect.name != "sqlite":
        return 0
    changed = 0
    for table, ident, column in _JSON_COLUMNS:
        rows = conn.execute(
            text(f"SELECT {ident}, {column} FROM {table} WHERE NOT json_valid({column})")
        ).all()
        for row_id, raw in rows:
            try:
                value = _finite(json.loads(raw))
            except ValueError:
                LOG.warning("%s %s: %s is not JSON and is left as it is", table, row_id, column)
                continue
            conn.execute(
                text(f"UPDATE {table} SET {column} = :v WHERE {ident} = :id"),
                {"v": json.dumps(value, allow_nan=False), "id": row_id},
            )
            changed += 1
    return changed
