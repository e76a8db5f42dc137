"""One exception hierarchy for all of Regalia.

Every error has a stable ``code`` (sent over the wire; clients rebuild the
class from it, never from the message) and the ``http_status`` a server uses::

    RegaliaError (code, http_status)
    ├── InvalidRequest                    400
    │   ├── InvalidName                   400
    │   ├── InvalidFilter                 400
    │   ├── FileChanged / FileMissing     400
    │   ├── ContentMismatch               400  (uploaded bytes do not hash as announced)
    │   ├── QueryTooExpensive             400  (a filter or search ran past the time budget)
    │   └── ContentNotUploaded            400  (a manifest names content the caller did not send)
    ├── Unauthenticated                   401
    ├── PermissionDenied                  403  (names the role needed)
    ├── NotFound                          404
    │   ├── OrganizationNotFound, UserNotFound, TeamNotFound
    │   ├── RegistryNotFound, CollectionNotFound
    │   ├── ArtifactNotFound, VersionNotFound, AliasNotFound
    │   └── AutomationNotFound
    ├── Conflict                          409
    │   ├── AlreadyExists
    │   ├── TypeMismatch
    │   ├── ProtectedAlias
    │   ├── FileConflict                  (a download would overwrite other content)
    │   └── AddressInUse                  (a server's host and port are taken)
    ├── TooLarge                          413
    ├── IntegrityError                    500  (a hash did not match: data is damaged)
    ├── StorageUnavailable                503
    └── ServerUnreachable                 503  (the client could not reach the server)
"""

from __future__ import annotations

from typing import Any


class RegaliaError(Exception):
    """Base of every error Regalia raises on purpose."""

    code: str = "error"
    http_status: int = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidRequest(RegaliaError):
    code = "invalid_request"
    http_status = 400


class InvalidName(InvalidRequest):
    code = "invalid_name"


class InvalidFilter(InvalidRequest):
    code = "invalid_filter"


class FileChanged(InvalidRequest):
    code = "file_changed"


class FileMissing(InvalidRequest):
    code = "file_missing"


class ContentMismatch(InvalidRequest):
    """A client sent bytes that do not hash to the digest it announced."""

    code = "content_mismatch"


class QueryTooExpensive(InvalidRequest):
    """A read ran longer than its time budget (``REGALIA_QUERY_TIMEOUT``) and was
    stopped; the message says which input to narrow. A 400, not a 503: the same
    request would be stopped again, so clients must not retry it unchanged."""

    code = "query_too_expensive"


class ContentNotUploaded(InvalidRequest):
    """A manifest names content the caller neither sent nor may download (SPEC §7).

    The answer is the same whether or not anyone stored that content, so it
    tells nothing about content the caller may not read."""

    code = "content_not_uploaded"


class Unauthenticated(RegaliaError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(RegaliaError):
    code = "permission_denied"
    http_status = 403


class NotFound(RegaliaError):
    code = "not_found"
    http_status = 404


class OrganizationNotFound(NotFound):
    code = "organization_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class TeamNotFound(NotFound):
    code = "team_not_found"


class RegistryNotFound(NotFound):
    code = "registry_not_found"


class CollectionNotFound(NotFound):
    code = "collection_not_found"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class AutomationNotFound(NotFound):
    code = "automation_not_found"


class Conflict(RegaliaError):
    code = "conflict"
    http_status = 409


class AlreadyExists(Conflict):
    code = "already_exists"


class TypeMismatch(Conflict):
    code = "type_mismatch"


class ProtectedAlias(Conflict):
    code = "protected_alias"


class FileConflict(Conflict):
    """A download folder holds files whose content differs from the version's."""

    code = "file_conflict"


class AddressInUse(Conflict):
    """``regalia server`` cannot listen: another process holds its host and port."""

    code = "address_in_use"


class TooLarge(RegaliaError):
    code = "too_large"
    http_status = 413


class IntegrityError(RegaliaError):
    code = "integrity_error"
    http_status = 500


class StorageUnavailable(RegaliaError):
    code = "storage_unavailable"
    http_status = 503


class ServerUnreachable(RegaliaError):
    code = "server_unreachable"
    http_status = 503


def _all_subclasses(cls: type[RegaliaError]) -> list[type[RegaliaError]]:
    out: list[type[RegaliaError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[RegaliaError]] = {c.code: c for c in _all_subclasses(RegaliaError)}


def from_dict(data: dict[str, Any]) -> RegaliaError:
    """Rebuild an error from its wire form ``{"code", "message", "details"}``."""
    cls = ERRORS_BY_CODE.get(str(data.get("code")), RegaliaError)
    return cls(str(data.get("message", "")), **dict(data.get("details") or {}))
