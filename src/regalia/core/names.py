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
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import regex

from regalia.core.scripts import mixed_scripts
from regalia.errors import InvalidName

REGISTRY_PREFIX = "wandb-registry-"
MAX_REGISTRY_NAME = 113
MAX_NAME = 128
MAX_ALIAS = 128
MAX_TAG = 128
MAX_RUN_KEY = 64
MAX_PATH = 1024  # characters of a file's path inside an artifact
MAX_PATH_PART = 255  # UTF-8 bytes of one folder or file name (ext4, APFS and NTFS allow 255)
# Ids of rows (versions, automations, history events): 64-bit signed integers.
MAX_ID = 2**63 - 1
# ``v<N>``: collections count their versions in a 32-bit column on PostgreSQL.
MAX_VERSION_INDEX = 2**31 - 1

_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_REGISTRY_FORBIDDEN = set("/\\#?%:")
_TAG = re.compile(r"^[-\w]+( +[-\w]+)*$")
_VERSION_REF = re.compile(r"^v([0-9]+)$")
_ENTITY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Characters that do not show, or reorder what does: format characters (zero
# width space, joiners, byte order mark, bidirectional embeddings, overrides and
# isolates, marks), every other default-ignorable code point (fillers, variation
# selectors), and code points that are no characters (unassigned, private use,
# surrogates).
_INVISIBLE = regex.compile(r"[\p{Cf}\p{Default_Ignorable_Code_Point}\p{Cn}\p{Co}\p{Cs}]")
# Windows: characters a file name may not hold, and names it reserves for devices.
_PATH_FORBIDDEN = set('<>:"|?*\\')
_PATH_BAD_CHAR = re.compile(
    '[<>:"|?*\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]'
)
_PATH_EMPTY_PART = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")
_PATH_TRAILING = re.compile(r"[. ](?:/|$)")
_PATH_RESERVED = re.compile(
    r"(?:^|/)(?:CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|"
    r"COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]) *(?:\.[^/]*)?(?=/|$)",
    re.IGNORECASE,
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (Cc)


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
    return _CONTROL.search(text) is not None


def _char(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}"


def name_key(name: str) -> str:
    """The key a name is stored and compared by: NFKC, case folded (NFKC again, as
    folding may undo it). ``Production``, ``ＰＲＯＤＵＣＴＩＯＮ`` and ``production``
    share the key ``production``; for ASCII it is ``name.lower()``.

    >>> name_key("Ｐｒｏｄ")
    'prod'
    """
    if name.isascii():
        return name.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def normalize_name(name: str, what: str, rule: str) -> str:
    """``name`` in NFKC; refused when it holds a character that does not show or
    a mix of scripts. ``rule`` prefixes the rule names (``alias_invisible``).

    Raises:
        InvalidName: rule ``<rule>_invisible`` (a format or bidirectional control
            character such as U+200B or U+202E, another default-ignorable code
            point, or an unassigned, private-use or surrogate code point) or
            ``<rule>_mixed_scripts`` (e.g. Latin with Cyrillic; Latin with Han,
            Hiragana, Katakana, Hangul or Bopomofo is allowed).
    """
    if name.isascii():
        return name
    norm = unicodedata.normalize("NFKC", name)
    bad = _INVISIBLE.search(norm)
    if bad is not None:
        raise InvalidName(
            f"{what} {name!r} contains {_char(bad.group())}, a character that does not show "
            "or reorders text; names may not contain invisible or bidirectional control "
            "characters",
            rule=f"{rule}_invisible",
            character=f"U+{ord(bad.group()):04X}",
        )
    mixed = mixed_scripts(norm)
    if mixed is not None:
        first, other, ch = mixed
        raise InvalidName(
            f"{what} {name!r} mixes the {first} and {other} scripts ({_char(ch)}); a name "
            "uses one script (Latin may go with Han, Hiragana, Katakana, Hangul or Bopomofo)",
            rule=f"{rule}_mixed_scripts",
            scripts=[first, other],
        )
    return norm


def validate_registry_name(name: str) -> str:
    """A registry name: 1-113 characters, none of ``/ \\ # ? % :`` or control
    characters, no whitespace but spaces; NFKC-normalized, one script. Returns
    the normalized name."""
    if not isinstance(name, str) or not name:
        raise InvalidName("registry name must not be empty", rule="registry_name")
    name = normalize_name(name, "registry name", "registry_name")
    if max(len(name), len(name_key(name))) > MAX_REGISTRY_NAME:
        raise InvalidName(
            f"registry name {name[:20]!r}... is {len(name)} characters "
            f"({len(name_key(name))} case-folded); the limit is {MAX_REGISTRY_NAME}",
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
    if any(ch.isspace() and ch != " " for ch in name):
        raise InvalidName(
            f"registry name {name!r} contains whitespace other than spaces",
            rule="registry_name_characters",
        )
    return name


def validate_artifact_name(name: str, what: str = "artifact name") -> str:
    """Artifact and collection names: ``[A-Za-z0-9_.-]+``, at most 128 characters
    (ASCII only, so no look-alike of another name can exist)."""
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
    key = name_key(alias)
    return key == "latest" or _VERSION_REF.match(key) is not None


def validate_alias(alias: str, *, allow_managed: bool = False) -> str:
    """An alias: 1-128 characters, no ``/``, ``:``, whitespace or control
    characters; NFKC-normalized, no invisible characters, one script. Returns the
    normalized alias (``ｐｒｏｄ`` -> ``prod``)."""
    if not isinstance(alias, str) or not alias:
        raise InvalidName("alias must not be empty", rule="alias")
    alias = normalize_name(alias, "alias", "alias")
    if max(len(alias), len(name_key(alias))) > MAX_ALIAS:
        raise InvalidName(
            f"alias {alias[:20]!r}... is {len(alias)} characters ({len(name_key(alias))} "
            f"case-folded); the limit is {MAX_ALIAS}",
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
    """A tag: words of ``[-\\w]`` separated by spaces, at most 128 characters;
    NFKC-normalized, one script. Returns the normalized tag."""
    if not isinstance(tag, str) or not tag:
        raise InvalidName("tag must not be empty", rule="tag")
    tag = normalize_name(tag, "tag", "tag")
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


def validate_label(value: str, what: str, limit: int) -> str:
    """A key a client chooses (a run's key, a job type): 1 to ``limit``
    characters, none of them a control or invisible character.

    Raises:
        InvalidName: rule ``label``, naming ``what``.
    """
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidName(f"a {what} has 1 to {limit} characters", rule="label")
    if _has_control(value) or _INVISIBLE.search(value) is not None:
        raise InvalidName(
            f"{what} {value!r} contains a control or invisible character", rule="label"
        )
    return value


def removable(validate: Callable[[str], str], name: str) -> str:
    """``validate(name)``, except that a name breaking only the Unicode rules
    (invisible characters, mixed scripts), which an older version may have
    stored, is returned as given: what exists can always be removed.

    >>> removable(validate_alias, "prod\u200bx")
    'prod\u200bx'
    """
    try:
        return validate(name)
    except InvalidName as exc:
        rule = str(exc.details.get("rule", ""))
        if rule.endswith(("_invisible", "_mixed_scripts")):
            return name
        raise


def removable_alias(alias: str) -> str:
    """An alias to remove or unprotect (see :func:`removable`)."""
    return removable(validate_alias, alias)


def _bad_path(name: str, why: str, rule: str = "file_path") -> InvalidName:
    return InvalidName(f"file name {name!r} is invalid: {why}", rule=rule, path=name)


def validate_file_path(name: str) -> str:
    """A file's path inside an artifact, portable to every operating system:
    relative, '/'-separated, at most 1024 characters (255 bytes a part).

    Raises:
        InvalidName: the path is empty or too long (rule ``file_path_length``);
            absolute, has a drive letter, or an empty, ``.`` or ``..`` part
            (``file_path``, no path traversal); a backslash, a character Windows
            forbids (``< > : " | ? *``) or a control or bidirectional control
            character (``file_path_characters``); a part Windows reserves
            (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``,
            ``LPT0``-``LPT9``, with any extension, in any case:
            ``file_path_reserved``); a part that ends with a dot or a space
            (``file_path_trailing``).
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("file name in an artifact must not be empty", rule="file_path")
    if len(name) > MAX_PATH:
        raise _bad_path(
            name[:40] + "...",
            f"it is {len(name)} characters; the limit is {MAX_PATH}",
            "file_path_length",
        )
    if _DRIVE.match(name) or name.startswith(("/", "\\")):
        raise _bad_path(
            name,
            "it must be a relative path without a drive letter (no path traversal)",
        )
    bad = _PATH_BAD_CHAR.search(name)
    if bad is not None:
        if bad.group() == "\\":
            raise _bad_path(name, "use '/' between folders, not '\\'", "file_path_characters")
        shown = bad.group() if bad.group() in _PATH_FORBIDDEN else _char(bad.group())
        raise _bad_path(
            name,
            f'it contains {shown}; file names may not contain < > : " | ? *, control or '
            "bidirectional control characters",
            "file_path_characters",
        )
    if _PATH_EMPTY_PART.search(name):
        raise _bad_path(
            name,
            "it must be a relative path without '..', '.' or empty parts (no path traversal)",
        )
    trailing = _PATH_TRAILING.search(name)
    if trailing is not None:
        part = name[: trailing.end()].rstrip("/").rsplit("/", 1)[-1]
        raise _bad_path(
            name,
            f"the part {part!r} ends with a dot or a space, which Windows drops",
            "file_path_trailing",
        )
    reserved = _PATH_RESERVED.search(name)
    if reserved is not None:
        raise _bad_path(
            name,
            f"{reserved.group().strip('/')!r} is a device name that Windows reserves (CON, "
            "PRN, AUX, NUL, COM0-9, LPT0-9, with any extension)",
            "file_path_reserved",
        )
    if len(name) > MAX_PATH_PART // 4 and any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_PATH_PART for part in name.split("/")
    ):
        raise _bad_path(name, f"a part is longer than {MAX_PATH_PART} bytes", "file_path_length")
    return name


def validate_manifest_paths(paths: Iterable[str]) -> list[str]:
    """Every path of one artifact valid (:func:`validate_file_path`), and the set
    writable into one folder on every operating system.

    Raises:
        InvalidName: a path is invalid; two paths are the same ignoring case (one
            would overwrite the other on Windows and macOS: rule
            ``file_path_duplicate``); a path is both a file and a folder
            (``a`` and ``a/b``: rule ``file_path_conflict``).
    """
    checked = [validate_file_path(p) for p in paths]
    seen: dict[str, str] = {}
    for p in checked:
        key = unicodedata.normalize("NFC", p).casefold()
        if key in seen:
            same = "the same name" if seen[key] == p else "the same name ignoring case"
            raise InvalidName(
                f"files {seen[key]!r} and {p!r} have {same}; one would overwrite the other "
                "on download",
                rule="file_path_duplicate",
                path=p,
            )
        seen[key] = p
    for key, p in seen.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in seen:
                raise InvalidName(
                    f"{seen[folder]!r} is a file, and {p!r} needs a folder of that name",
                    rule="file_path_conflict",
                    path=p,
                )
    return checked


def version_index_from_ref(ref: str) -> int | None:
    """``'v7'`` -> 7; any other reference -> None.

    Raises:
        InvalidName: ``v<N>`` with N past :data:`MAX_VERSION_INDEX` (rule ``version_ref``).
    """
    m = _VERSION_REF.match(ref)
    if m is None:
        return None
    digits = m.group(1)
    if len(digits) > 10 or int(digits) > MAX_VERSION_INDEX:
        raise InvalidName(
            f"version {ref[:24]!r} is out of range: versions are numbered v0 to "
            f"v{MAX_VERSION_INDEX}",
            rule="version_ref",
        )
    return int(digits)


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
    ref = validate_alias(ref, allow_managed=True)
    version_index_from_ref(ref)  # v<N> past the range is an error, not a missing version
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
        registry = validate_registry_name(parts[reg_at][len(REGISTRY_PREFIX) :])
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
