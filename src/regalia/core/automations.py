"""Automations (SPEC §5), the pure part: events, filters, payload templates,
request signatures, retry delays and which targets may be called.

Nothing here touches the database or the network; which targets may be
called is :mod:`regalia.core.targets`.

Payload templates are JSON documents with ``${name}`` placeholders in their
strings. A string that is exactly one placeholder takes the value's own JSON
type (``"${artifact_metadata.epochs}"`` may become ``12``); elsewhere a value
is put into the string as text. The template is parsed as JSON when the
automation is created, so a rendered payload is always valid JSON, whatever
the values hold (no quoting can escape a string).

Signatures (generic webhooks with a secret)::

    X-Regalia-Delivery:  <delivery id>        (the same on every retry: deduplicate on it)
    X-Regalia-Timestamp: <unix seconds of this attempt>
    X-Regalia-Signature: sha256=<hex HMAC-SHA256(secret, "<id>.<timestamp>." + body)>

See :func:`verify_signature` for the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from regalia.core import patterns
from regalia.core.limits import MAX_PATTERN_LENGTH
from regalia.core.names import name_key
from regalia.errors import InvalidRequest


class EventType(StrEnum):
    """What can start an automation; values as W&B names them."""

    LINK_ARTIFACT = "LINK_ARTIFACT"  # a version is linked to a collection
    ADD_ARTIFACT_ALIAS = "ADD_ARTIFACT_ALIAS"  # an alias is added to (or moved onto) a version
    REMOVE_ARTIFACT_ALIAS = "REMOVE_ARTIFACT_ALIAS"
    UNLINK_ARTIFACT = "UNLINK_ARTIFACT"  # a version is unlinked from its collection
    ADD_ARTIFACT_TAG = "ADD_ARTIFACT_TAG"  # a tag is added to a version


# History actions (R11) that are automation events.
EVENT_OF_ACTION: dict[str, EventType] = {
    "link": EventType.LINK_ARTIFACT,
    "alias_add": EventType.ADD_ARTIFACT_ALIAS,
    "alias_remove": EventType.REMOVE_ARTIFACT_ALIAS,
    "unlink": EventType.UNLINK_ARTIFACT,
    "tag_add": EventType.ADD_ARTIFACT_TAG,
}


class FilterKind(StrEnum):
    ALIAS = "alias"  # LINK_ARTIFACT: linked carrying this alias (case-insensitive)
    ALIAS_REGEX = "alias_regex"  # alias events: the alias matches (RE2, anywhere in it)
    TAG_REGEX = "tag_regex"  # ADD_ARTIFACT_TAG: the tag matches (RE2, anywhere in it)


_FILTERS_OF_EVENT: dict[EventType, tuple[FilterKind, ...]] = {
    EventType.LINK_ARTIFACT: (FilterKind.ALIAS,),
    EventType.ADD_ARTIFACT_ALIAS: (FilterKind.ALIAS_REGEX,),
    EventType.REMOVE_ARTIFACT_ALIAS: (FilterKind.ALIAS_REGEX,),
    EventType.UNLINK_ARTIFACT: (),
    EventType.ADD_ARTIFACT_TAG: (FilterKind.TAG_REGEX,),
}
MAX_PATTERN = MAX_PATTERN_LENGTH  # also the longest plain 'alias' filter
# What a test delivery shows as the alias or tag, when the filter allows one of them.
SAMPLE_ALIASES = ("production", "staging", "candidate", "latest", "champion", "v1")
SAMPLE_TAGS = ("validated", "approved", "release", "baseline")
# The events whose test delivery names an alias or a tag even with no filter.
SAMPLE_EVENTS = frozenset(
    {EventType.ADD_ARTIFACT_ALIAS, EventType.REMOVE_ARTIFACT_ALIAS, EventType.ADD_ARTIFACT_TAG}
)


@dataclass(frozen=True)
class EventFilter:
    """An automation's filter. Regex filters are RE2 syntax
    (:mod:`regalia.core.patterns`), matched in linear time anywhere in the
    alias or tag; one stored before that rule that RE2 cannot compile matches
    nothing (see :attr:`unusable`)."""

    kind: FilterKind
    value: str

    @classmethod
    def parse(cls, event: EventType, kind: str | None, value: str | None) -> EventFilter | None:
        """Validate an automation's filter for ``event`` (None: every such event)."""
        if kind is None and not value:
            return None
        try:
            fkind = FilterKind(kind or "")
        except ValueError:
            raise InvalidRequest(
                f"unknown filter {kind!r}; filters are: {', '.join(k.value for k in FilterKind)}"
            ) from None
        allowed = _FILTERS_OF_EVENT[event]
        if fkind not in allowed:
            which = f"only {allowed[0].value!r}" if allowed else "no filter"
            raise InvalidRequest(f"the event {event.value} takes {which}, not {fkind.value!r}")
        if not value or len(value) > MAX_PATTERN:
            raise InvalidRequest(
                f"a {fkind.value} filter has 1 to {MAX_PATTERN} characters",
                field="filter_value",
                limit="pattern_length",
                maximum=MAX_PATTERN,
            )
        if fkind is not FilterKind.ALIAS:
            problem = patterns.pattern_problem(value)
            if problem:
                raise InvalidRequest(
                    f"the {fkind.value} filter {value!r} {problem.text}",
                    field="filter_value",
                    **problem.limit,
                )
        return cls(fkind, value)

    @property
    def unusable(self) -> bool:
        """A regex filter RE2 cannot compile (stored before patterns were RE2):
        it matches nothing; the caller should say so."""
        return self.kind is not FilterKind.ALIAS and patterns.compiled(self.value) is None

    def sample(self) -> str:
        """An alias or tag this filter lets through, for a test delivery: the
        plain alias itself; for a pattern, the first of a few usual names that
        matches it, else a literal pattern's own text, else ``sample``."""
        if self.kind is FilterKind.ALIAS:
            return self.value
        usual: tuple[str, ...] = (
            SAMPLE_TAGS if self.kind is FilterKind.TAG_REGEX else SAMPLE_ALIASES
        )
        candidates: list[str] = [*usual, self.value.strip("^$")]
        for candidate in candidates:
            if patterns.search(self.value, candidate):
                return candidate
        return "sample"

    def matches(self, *, alias: str | None, tag: str | None, link_aliases: list[str]) -> bool:
        if self.kind is FilterKind.ALIAS:
            return name_key(self.value) in {name_key(a) for a in link_aliases}
        subject = alias if self.kind is FilterKind.ALIAS_REGEX else tag
        return subject is not None and patterns.search(self.value, subject)


# -- payload templates -----------------------------------------------------------------
VARIABLES = (
    "event_type",
    "event_author",
    "alias",
    "tag",
    "registry_name",
    "artifact_collection_name",
    "artifact_version",
    "artifact_version_string",
    "entity_name",
    "project_name",
)
METADATA_PREFIX = "artifact_metadata."
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MASK = "********"


def validate_secret_name(name: str) -> None:
    if not _SECRET_NAME.match(name):
        raise InvalidRequest(
            f"invalid secret name {name!r}: upper-case letters, digits and _ (up to 64), "
            "starting with a letter"
        )


def parse_template(template: str, secret_names: set[str]) -> Any:
    """The template as JSON, after checking every placeholder names a variable,
    ``artifact_metadata.KEY`` or one of ``secret_names``."""
    try:
        doc = json.loads(template)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the payload template is not valid JSON: {exc}") from None
    for text in _strings(doc):
        for name in _PLACEHOLDER.findall(text):
            if name in VARIABLES or name in secret_names:
                continue
            if name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
                continue
            known = ", ".join(f"${{{v}}}" for v in VARIABLES)
            raise InvalidRequest(
                f"unknown variable ${{{name}}} in the payload template; known: {known}, "
                f"${{{METADATA_PREFIX}KEY}} and the secrets by name"
            )
    return doc


def _strings(doc: Any) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for k, v in doc.items() for s in (k, *_strings(v))]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return []


def render(doc: Any, values: Mapping[str, Any]) -> Any:
    """Fill the placeholders of a parsed template with ``values`` (names as in the
    template; a missing metadata key renders as null)."""
    if isinstance(doc, str):
        whole = _PLACEHOLDER.fullmatch(doc)
        if whole is not None:
            return _value(values, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _text(_value(values, m.group(1))), doc)
    if isinstance(doc, dict):
        return {render(k, values) if isinstance(k, str) else k: render(v, values)
                for k, v in doc.items()}  # fmt: skip
    if isinstance(doc, list):
        return [render(v, values) for v in doc]
    return doc


def _value(values: Mapping[str, Any], name: str) -> Any:
    if name.startswith(METADATA_PREFIX):
        metadata = values.get("artifact_metadata") or {}
        return metadata.get(name[len(METADATA_PREFIX) :])
    return values.get(name)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def body_bytes(payload: Any) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# -- signatures ------------------------------------------------------------------------
DELIVERY_HEADER = "X-Regalia-Delivery"
TIMESTAMP_HEADER = "X-Regalia-Timestamp"
SIGNATURE_HEADER = "X-Regalia-Signature"
EVENT_HEADER = "X-Regalia-Event"


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """The receiver's check: the signature matches the body, id and timestamp,
    and the timestamp is within ``tolerance_s`` of ``now`` (replays are refused).
    ``headers`` is looked up case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    delivery = lower.get(DELIVERY_HEADER.lower())
    stamp = lower.get(TIMESTAMP_HEADER.lower())
    given = lower.get(SIGNATURE_HEADER.lower())
    if delivery is None or stamp is None or given is None or not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, delivery, int(stamp), body))


# -- retries ---------------------------------------------------------------------------
def retry_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after ``attempt`` failed tries: exponential with jitter,
    ``uniform(base, min(cap, base * 2**(attempt - 1)))``; or, when the receiver
    said when to come back (429/503 with Retry-After), exactly that."""
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    high = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(min(base_s, high), high)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
