"""Names and paths (SPEC §2): validation rules and path parsing, no I/O.

Every check raises :class:`~regalia.errors.InvalidName` whose message names
the rule that was broken, e.g.::

    >>> validate_alias("latest")
    Traceback (most recent call last):
    ...
    regalia.errors.InvalidName: alias 'latest' is managed by the registry ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regalia.errors import InvalidName

REGISTRY_PREFIX = "wandb-registry-"
MAX_REGISTRY_NAME = 113
MAX_NAME = 128
MAX_ALIAS = 128
MAX_TAG = 128

_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_REGISTRY_FORBIDDEN = set("/\\#?%:")
_TAG = re.compile(r"^[-\w]+( +[-\w]+)*$")
_VERSION_REF = re.compile(r"^v(\d+)$")
_ENTITY_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class NameRule:
    """One name rule of SPEC §2 as data, for documents that state it (the
    OpenAPI document's parameter and body schemas).

    ``pattern`` is written in the subset shared by Python's ``re`` and
    ECMA-262 (JSON Schema's dialect), except that ``\\w``, ``\\d`` and ``\\s``
    mean their Unicode classes as in Python. It states the characters a name
    may hold; the ``validate_*`` function of the rule is the authority and may
    refuse more (``tests/test_openapi.py`` checks that every name it accepts
    matches the pattern, and that the two agree on printable ASCII).
    """

    what: str
    pattern: str
    max_length: int
    description: str

    def json_schema(self) -> dict[str, object]:
        """The rule as a JSON Schema for a string."""
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": self.pattern,
            "description": self.description,
        }


# No / \ # ? % : or control characters, no whitespace at either end.
_REGISTRY_CHAR = r"[^/\\#?%:\x00-\x1f\x7f]"
_REGISTRY_EDGE = r"[^/\\#?%:\x00-\x1f\x7f\s]"
REGISTRY_NAME_RULE = NameRule(
    "registry name",
    rf"^{_REGISTRY_EDGE}(?:{_REGISTRY_CHAR}*{_REGISTRY_EDGE})?$",
    MAX_REGISTRY_NAME,
    f"a registry name: 1-{MAX_REGISTRY_NAME} characters, none of / \\ # ? % : or control "
    "characters, no whitespace at either end; unique in the organization ignoring case",
)
ARTIFACT_NAME_RULE = NameRule(
    "artifact name",
    r"^(?!\.\.?$)[A-Za-z0-9_.-]+$",
    MAX_NAME,
    f"an artifact or collection name: 1-{MAX_NAME} of A-Z a-z 0-9 _ . - (not . or ..)",
)
ENTITY_NAME_RULE = NameRule(
    "name",
    ARTIFACT_NAME_RULE.pattern,
    MAX_NAME,
    f"a user, team, entity or project name: 1-{MAX_NAME} of A-Z a-z 0-9 _ . - (not . or ..)",
)
# Aliases 'latest' and 'v<digits>' (any case) are managed: a reference may name
# them, a change may not.
_ALIAS_CHARS = rf"[^/:\s\x00-\x1f\x7f]{{1,{MAX_ALIAS}}}"
ALIAS_REF_RULE = NameRule(
    "alias",
    rf"^{_ALIAS_CHARS}$",
    MAX_ALIAS,
    f"an alias: 1-{MAX_ALIAS} characters, no '/', ':', whitespace or control characters "
    "('latest' and 'v<N>' included)",
)
ALIAS_RULE = NameRule(
    "alias",
    rf"^(?![Ll][Aa][Tt][Ee][Ss][Tt]$)(?![Vv]\d+$){_ALIAS_CHARS}$",
    MAX_ALIAS,
    f"an alias: 1-{MAX_ALIAS} characters, no '/', ':', whitespace or control characters; "
    "not 'latest' or 'v<N>' (the registry manages those)",
)
TAG_RULE = NameRule(
    "tag",
    _TAG.pattern,
    MAX_TAG,
    f"a tag: words of letters, digits, '_' and '-' separated by spaces, "
    f"at most {MAX_TAG} characters",
)
# Paths (SPEC §2) put the rules together: org, entity and project segments
# follow the artifact-name characters; a ref is any alias, managed ones too.
_SEGMENT = r"[A-Za-z0-9_.-]{1,128}"
_REGISTRY_INNER = REGISTRY_NAME_RULE.pattern[1:-1]
_REGISTRY_PATH = rf"(?:{_SEGMENT}/)?{REGISTRY_PREFIX}{_REGISTRY_INNER}/{_SEGMENT}"
_REF = rf"(?::{_ALIAS_CHARS})?"
REGISTRY_TARGET_RULE = NameRule(
    "registry path",
    rf"^{_REGISTRY_PATH}$",
    MAX_NAME + 1 + len(REGISTRY_PREFIX) + MAX_REGISTRY_NAME + 1 + MAX_NAME,
    f"a registry collection: [org/]{REGISTRY_PREFIX}{{registry}}/{{collection}}",
)
ARTIFACT_PATH_RULE = NameRule(
    "artifact path",
    rf"^(?:{_REGISTRY_PATH}|{_SEGMENT}/{_SEGMENT}/{_SEGMENT}){_REF}$",
    REGISTRY_TARGET_RULE.max_length + 1 + MAX_ALIAS,
    f"[org/]{REGISTRY_PREFIX}{{registry}}/{{collection}}[:ref] or "
    "entity/project/name[:ref]; ref: vN, latest or an alias (no ref: latest)",
)
DIGEST_RULE = NameRule(
    "digest",
    r"^[0-9a-f]{64}$",
    64,
    "a SHA-256 digest in lowercase hex (64 characters)",
)


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def validate_registry_name(name: str) -> str:
    """A registry name: 1-113 characters, none of ``/ \\ # ? % :`` or control characters."""
    if not isinstance(name, str) or not name:
        raise InvalidName("registry name must not be empty", rule="registry_name")
    if len(name) > MAX_REGISTRY_NAME:
        raise InvalidName(
            f"registry name {name[:20]!r}... is {len(name)} characters; "
            f"the limit is {MAX_REGISTRY_NAME}",
            rule="registry_name_length",
        )
    bad = sorted({ch for ch in name if ch in _REGISTRY_FORBIDDEN})
    if bad or _has_control(name):
        shown = " ".join(bad) if bad else "a control character"
        raise InvalidName(
            f"registry name {name!r} contains {shown}; registry names may not contain "
            "/ \\ # ? % : or control characters",
            rule="registry_name_characters",
        )
    if name != name.strip():
        raise InvalidName(
            f"registry name {name!r} starts or ends with whitespace", rule="registry_name"
        )
    return name


def validate_artifact_name(name: str, what: str = "artifact name") -> str:
    """Artifact and collection names: ``[A-Za-z0-9_.-]+``, at most 128 characters."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} must not be empty", rule="artifact_name")
    if len(name) > MAX_NAME:
        raise InvalidName(
            f"{what} {name[:20]!r}... is {len(name)} characters; the limit is {MAX_NAME}",
            rule="artifact_name_length",
        )
    if not _ARTIFACT_NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidName(
            f"{what} {name!r} is invalid: use only letters, digits, '_', '.' and '-'",
            rule="artifact_name_characters",
        )
    return name


def validate_entity_name(name: str, what: str = "name") -> str:
    """User, team, entity and project names share the artifact-name rule."""
    return validate_artifact_name(name, what)


def is_managed_alias(alias: str) -> bool:
    """``latest`` and ``v<digits>`` are set by the registry, never by hand."""
    return alias.lower() == "latest" or _VERSION_REF.match(alias.lower()) is not None


def validate_alias(alias: str, *, allow_managed: bool = False) -> str:
    """An alias: 1-128 characters, no ``/``, ``:``, whitespace or control characters."""
    if not isinstance(alias, str) or not alias:
        raise InvalidName("alias must not be empty", rule="alias")
    if len(alias) > MAX_ALIAS:
        raise InvalidName(
            f"alias {alias[:20]!r}... is {len(alias)} characters; the limit is {MAX_ALIAS}",
            rule="alias_length",
        )
    if any(ch in "/:" or ch.isspace() for ch in alias) or _has_control(alias):
        raise InvalidName(
            f"alias {alias!r} is invalid: aliases may not contain '/', ':', whitespace "
            "or control characters",
            rule="alias_characters",
        )
    if not allow_managed and is_managed_alias(alias):
        raise InvalidName(
            f"alias {alias!r} is managed by the registry ('latest' and 'v<N>' are set "
            "automatically) and cannot be added or removed by hand",
            rule="alias_managed",
        )
    return alias


def validate_tag(tag: str) -> str:
    """A tag: words of ``[-\\w]`` separated by spaces, at most 128 characters."""
    if not isinstance(tag, str) or not tag:
        raise InvalidName("tag must not be empty", rule="tag")
    if len(tag) > MAX_TAG:
        raise InvalidName(
            f"tag {tag[:20]!r}... is {len(tag)} characters; the limit is {MAX_TAG}",
            rule="tag_length",
        )
    if not _TAG.fullmatch(tag):  # match() let a trailing newline through
        raise InvalidName(
            f"tag {tag!r} is invalid: use letters, digits, '_' and '-', words separated "
            "by spaces, no leading or trailing space",
            rule="tag_characters",
        )
    return tag


def validate_file_path(name: str) -> str:
    """A file's path inside an artifact: relative, '/'-separated, no '..' or empty parts."""
    if not isinstance(name, str) or not name:
        raise InvalidName("file name in an artifact must not be empty", rule="file_path")
    norm = name.replace("\\", "/")
    parts = norm.split("/")
    if norm.startswith("/") or any(p in ("", ".", "..") for p in parts) or _has_control(norm):
        raise InvalidName(
            f"file name {name!r} is invalid: it must be a relative path without '..', "
            "'.' or empty parts (no path traversal)",
            rule="file_path",
        )
    return norm


def version_index_from_ref(ref: str) -> int | None:
    """``'v7'`` -> 7; any other reference -> None."""
    m = _VERSION_REF.match(ref)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class RegistryPath:
    """``[org/]wandb-registry-{registry}/{collection}[:{ref}]``."""

    registry: str
    collection: str
    ref: str
    org: str | None = None

    def __str__(self) -> str:
        org = f"{self.org}/" if self.org else ""
        return f"{org}{REGISTRY_PREFIX}{self.registry}/{self.collection}:{self.ref}"


@dataclass(frozen=True)
class SourcePath:
    """``entity/project/name[:{ref}]``."""

    entity: str
    project: str
    name: str
    ref: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}:{self.ref}"


ArtifactPath = RegistryPath | SourcePath


def _split_ref(path: str, default_ref: str | None) -> tuple[str, str | None]:
    head, sep, ref = path.rpartition(":")
    if not sep:
        return path, default_ref
    if not ref:
        raise InvalidName(f"path {path!r} ends with ':' but names no version or alias", rule="path")
    validate_alias(ref, allow_managed=True)
    return head, ref


def parse_target(path: str) -> RegistryPath:
    """Parse a link target (a registry path, no ref allowed) into a RegistryPath."""
    parsed = parse_path(path, default_ref="latest")
    if not isinstance(parsed, RegistryPath):
        raise InvalidName(
            f"target path {path!r} is not a registry path; use "
            f"'{REGISTRY_PREFIX}<registry>/<collection>'",
            rule="registry_path",
        )
    if ":" in path.split("/")[-1]:
        raise InvalidName(
            f"target path {path!r} must not carry a version or alias; pass aliases separately",
            rule="registry_path",
        )
    return parsed


def parse_path(path: str, default_ref: str = "latest") -> ArtifactPath:
    """Parse a registry path or a source path (SPEC §2).

    >>> parse_path("wandb-registry-Model/zoo:production")
    RegistryPath(registry='Model', collection='zoo', ref='production', org=None)
    """
    if not isinstance(path, str) or not path.strip():
        raise InvalidName("artifact path must not be empty", rule="path")
    body, ref = _split_ref(path.strip(), default_ref)
    assert ref is not None
    parts = body.split("/")
    reg_at = next((i for i, p in enumerate(parts) if p.startswith(REGISTRY_PREFIX)), None)
    if reg_at is not None:
        if reg_at > 1 or len(parts) != reg_at + 2:
            raise InvalidName(
                f"registry path {path!r} must look like "
                f"'[org/]{REGISTRY_PREFIX}<registry>/<collection>[:alias]'",
                rule="registry_path",
            )
        org = parts[0] if reg_at == 1 else None
        registry = parts[reg_at][len(REGISTRY_PREFIX) :]
        validate_registry_name(registry)
        validate_artifact_name(parts[reg_at + 1], "collection name")
        return RegistryPath(registry=registry, collection=parts[reg_at + 1], ref=ref, org=org)
    if len(parts) != 3:
        raise InvalidName(
            f"artifact path {path!r} must be 'entity/project/name[:alias]' or "
            f"'[org/]{REGISTRY_PREFIX}<registry>/<collection>[:alias]'",
            rule="path",
        )
    entity, project, name = parts
    validate_entity_name(entity, "entity name")
    validate_entity_name(project, "project name")
    validate_artifact_name(name)
    return SourcePath(entity=entity, project=project, name=name, ref=ref)
