r"""The bounds on what one request may ask of the database, in one place.

A filter, a pattern or a search a user sends runs inside the server; these
numbers keep the worst of them short, so one caller cannot stall the others.
They are far above what a person writes (SPEC §6's examples use a handful of
clauses), and each one that is exceeded gets a 400 naming the limit and where
in the input it was crossed. ``docs/filters.md`` lists them for users.

Filters (:func:`regalia.core.filters.parse_filter`), per filter (a request
with ``registry_filter``, ``collection_filter`` and ``filter`` has three):

* :data:`MAX_FILTER_CLAUSES`: conditions in all; each operator on a field
  (``{"tag": "x"}`` is one, ``{"version": {"$gte": 1, "$lt": 5}}`` two) and
  each ``$and``, ``$or`` and ``$not`` counts one.
* :data:`MAX_FILTER_DEPTH`: ``$and`` / ``$or`` / ``$not`` nested in each
  other (a field's ``$not`` counts too).
* :data:`MAX_FILTER_VALUES`: values in ``$in`` / ``$nin`` lists, all the
  lists of the filter together.
* :data:`MAX_REGEX_CLAUSES`: ``$regex`` conditions.

Patterns (filter ``$regex``, automations' ``alias_regex`` / ``tag_regex``):
:data:`MAX_PATTERN_LENGTH` characters, RE2 syntax (linear-time matching,
:mod:`regalia.core.patterns`), compiling to at most :data:`MAX_PATTERN_PROGRAM`
RE2 instructions. RE2's time is linear in the text times the program size, so
this bounds the cost of one match: ``.{100}`` is 704 instructions,
``^(prod|staging)-v\d+$`` about 20.

GraphQL (the ``wandb`` client's ``POST /graphql``): a query of at most
:data:`MAX_GRAPHQL_TOKENS` tokens, resolving at most :data:`MAX_GRAPHQL_FIELDS`
fields (introspection's types nest in each other, so depth alone would not
bound the work); the client's own queries stay far below both.

Time (``REGALIA_QUERY_TIMEOUT`` / ``REGALIA_WRITE_TIMEOUT`` override them):
a read that runs longer than :data:`QUERY_TIMEOUT_S` is stopped by the
database (PostgreSQL ``statement_timeout``; on SQLite an interrupt from a
progress handler) and answered 400 ``query_too_expensive``; a write statement
is stopped after :data:`WRITE_TIMEOUT_S` (nothing of it is written).
"""

from __future__ import annotations

from typing import Final

MAX_FILTER_CLAUSES: Final = 100
MAX_FILTER_DEPTH: Final = 10
MAX_FILTER_VALUES: Final = 1000
MAX_REGEX_CLAUSES: Final = 10
MAX_PATTERN_LENGTH: Final = 256
MAX_PATTERN_PROGRAM: Final = 1000

MAX_GRAPHQL_TOKENS: Final = 10_000
MAX_GRAPHQL_FIELDS: Final = 20_000

QUERY_TIMEOUT_S: Final = 5.0
WRITE_TIMEOUT_S: Final = 60.0
