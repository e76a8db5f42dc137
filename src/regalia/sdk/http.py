"""The SDK over HTTP: :class:`HttpBackend` offers the in-process backend's
methods by calling a Regalia server's REST API.

Errors come back as the server's envelope and are raised as the same
:class:`~regalia.errors.RegaliaError` class (rebuilt from its ``code``).
Requests that cannot change anything twice are retried on connection
failures; writes carry an ``Idempotency-Key`` so that their retries are safe
too. No httpx exception leaves this module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from regalia.blobs.base import BlobStore, ProgressSink, StoredBlob
from regalia.config import Settings
from regalia.core.apikeys import PREFIX_LENGTH, what_to_run
from regalia.core.jsonvalues import dumps_strict, validate_metadata
from regalia.errors import (
    InvalidRequest,
    RegaliaError,
    ServerUnreachable,
    Unauthenticated,
    from_dict,
)
from regalia.sdk import wire
from regalia.sdk.cache import ArtifactCache, default_max_bytes
from regalia.sdk.transfer import RemoteBlobs, Uploader
from regalia.service.views import (
    AttemptView,
    AutomationView,
    DeliveryView,
    FileEntry,
    GcReport,
    KeyView,
    MemberView,
    Page,
    RegistryView,
    TeamView,
    UserView,
    VersionView,
)

RETRIES = 4
RETRY_STATUSES = {502, 503, 504}
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def _seg(value: str) -> str:
    return quote(value, safe="")


class HttpBackend:
    """A Regalia server, acting as the owner of ``api_key``.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080``.
        api_key: sent as ``Authorization: Bearer``.
        settings: where the local download cache lives.
    """

    def __init__(self, base_url: str, api_key: str, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "regalia-sdk"},
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self.cache = ArtifactCache(self.settings.cache_dir, default_max_bytes())
        self.uploader = Uploader(self)
        self.actor = wire.actor(self.call("GET", "/viewer"))

    # -- plumbing --------------------------------------------------------------------
    @contextmanager
    def transport_errors(self) -> Iterator[None]:
        """httpx failures as :class:`ServerUnreachable`."""
        try:
            yield
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the Regalia server at {self.base_url}: {exc}",
                base_url=self.base_url,
            ) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One API call (path under ``/api/v1``); returns the decoded JSON.

        Retried on connection failures and 502-504 when repeating it is safe:
        reads, PUT/DELETE, and writes sent with an idempotency key.
        """
        safe = method in {"GET", "PUT", "DELETE"} if idempotent is None else idempotent
        if json is not None:
            # Strict JSON (httpx would raise a bare ValueError for a NaN): an
            # InvalidRequest naming where, before anything is sent.
            content = dumps_strict(json).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
            json = None
        attempt = 0
        while True:
            try:
                response = self.client.request(
                    method,
                    "/api/v1" + path,
                    json=json,
                    params=params,
                    content=content,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= RETRIES or (sent and not safe):
                    raise ServerUnreachable(
                        f"cannot reach the Regalia server at {self.base_url}: {exc}",
                        base_url=self.base_url,
                    ) from None
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUSES or not safe or attempt >= RETRIES:
                    raise self.explained(error_of(response))
            attempt += 1
            time.sleep(min(2.0, 0.05 * 2**attempt))

    def explained(self, err: RegaliaError) -> RegaliaError:
        """A refused key as one line naming this server and what to run."""
        reason = err.details.get("reason")
        if not isinstance(err, Unauthenticated) or not isinstance(reason, str):
            return err
        return Unauthenticated(
            f"the Regalia server at {self.base_url} refused the API key: {err.message}; "
            f"{what_to_run(reason, self.base_url)}",
            **err.details,
        )

    def write(self, method: str, path: str, json: Any = None) -> Any:
        """A write that may be retried: it carries a fresh idempotency key."""
        return self.call(
            method,
            path,
            json=json,
            idempotent=True,
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )

    def refresh(self) -> None:
        self.actor = wire.actor(self.call("GET", "/viewer"))

    def close(self) -> None:
        self.client.close()

    # -- files -----------------------------------------------------------------------
    def store_file(self, path: Path, progress: ProgressSink | None = None) -> StoredBlob:
        return self.uploader.upload([Path(path)], progress)[0]

    def store_files(
        self, paths: Sequence[Path], progress: ProgressSink | None = None
    ) -> list[StoredBlob]:
        return self.uploader.upload([Path(p) for p in paths], progress)

    def blobs_for(self, membership_id: int) -> BlobStore:
        return RemoteBlobs(self, membership_id)  # type: ignore[return-value]

    # -- maintenance -----------------------------------------------------------------
    def collect_garbage(self, *, grace: timedelta, dry_run: bool = False) -> GcReport:
        d = self.call(
            "POST", "/admin/gc", json={"grace_s": grace.total_seconds(), "dry_run": dry_run}
        )
        return GcReport(**d)

    # -- identities ------------------------------------------------------------------
    def create_user(
        self,
        name: str,
        *,
        org_role: str = "member",
        service_account: bool = False,
        exist_ok: bool = False,
    ) -> tuple[UserView, str | None]:
        d = self.call(
            "POST",
            "/users",
            json={
                "name": name,
                "org_role": org_role,
                "service_account": service_account,
                "exist_ok": exist_ok,
            },
        )
        return wire.user(d["user"]), d["api_key"]

    def create_api_key(self, user_name: str | None = None) -> str:
        if user_name is None:
            return str(self.call("POST", "/viewer/api-keys")["api_key"])
        return str(self.call("POST", f"/users/{_seg(user_name)}/api-keys")["api_key"])

    def revoke_api_keys(self, user_name: str) -> int:
        return int(self.call("DELETE", f"/users/{_seg(user_name)}/api-keys")["revoked"])

    def list_api_keys(self, user_name: str | None = None) -> list[KeyView]:
        path = "/viewer/api-keys" if user_name is None else f"/users/{_seg(user_name)}/api-keys"
        return wire.many(self.call("GET", path), wire.api_key)

    def revoke_api_key(self, prefix: str) -> KeyView:
        # Only the characters a key's stored prefix holds travel: never a whole key in a URL.
        text = prefix.strip()[:PREFIX_LENGTH]
        if not text:
            raise InvalidRequest(
                "give the first characters of the API key to revoke (see 'regalia key list')"
            )
        return wire.api_key(self.call("DELETE", f"/api-keys/{_seg(text)}"))

    def set_org_role(self, user_name: str, org_role: str) -> UserView:
        d = self.call("PUT", f"/users/{_seg(user_name)}/org-role", json={"org_role": org_role})
        return wire.user(d)

    def list_users(self) -> list[UserView]:
        return wire.many(self.call("GET", "/users"), wire.user)

    def create_team(self, name: str, *, exist_ok: bool = False) -> TeamView:
        return wire.team(self.call("POST", "/teams", json={"name": name, "exist_ok": exist_ok}))

    def list_teams(self) -> list[TeamView]:
        return wire.many(self.call("GET", "/teams"), wire.team)

    def get_team(self, name: str) -> TeamView:
        return wire.team(self.call("GET", f"/teams/{_seg(name)}"))

    def add_team_member(
        self, team_name: str, user_name: str, *, role: str | None = None
    ) -> TeamView:
        body = {"user": user_name, "role": role}
        return wire.team(self.call("POST", f"/teams/{_seg(team_name)}/members", json=body))

    def set_team_role(self, team_name: str, user_name: str, role: str) -> TeamView:
        path = f"/teams/{_seg(team_name)}/members/{_seg(user_name)}"
        return wire.team(self.call("PUT", path, json={"role": role}))

    def remove_team_member(self, team_name: str, user_name: str) -> TeamView:
        path = f"/teams/{_seg(team_name)}/members/{_seg(user_name)}"
        return wire.team(self.call("DELETE", path))

    # -- registries ------------------------------------------------------------------
    def create_registry(
        self,
        name: str,
        *,
        visibility: str = "organization",
        description: str = "",
        artifact_types: Sequence[str] | None = None,
        exist_ok: bool = False,
    ) -> RegistryView:
        body = {
            "name": name,
            "visibility": visibility,
            "description": description,
            "artifact_types": list(artifact_types) if artifact_types is not None else None,
            "exist_ok": exist_ok,
        }
        return wire.registry(self.call("POST", "/registries", json=body))

    def get_registry(self, name: str) -> RegistryView:
        return wire.registry(self.call("GET", f"/registries/{_seg(name)}"))

    def list_registries(self) -> list[RegistryView]:
        return wire.many(self.call("GET", "/registries"), wire.registry)

    def update_registry(
        self,
        name: str,
        *,
        description: str | None = None,
        visibility: str | None = None,
        artifact_types: Sequence[str] | None = None,
        clear_artifact_types: bool = False,
    ) -> RegistryView:
        body = {
            "description": description,
            "visibility": visibility,
            "artifact_types": list(artifact_types) if artifact_types is not None else None,
            "clear_artifact_types": clear_artifact_types,
        }
        return wire.registry(self.call("PATCH", f"/registries/{_seg(name)}", json=body))

    def delete_registry(self, name: str) -> None:
        self.call("DELETE", f"/registries/{_seg(name)}")

    def set_registry_role(
        self,
        registry: str,
        *,
        user: str | None = None,
        team: str | None = None,
        role: str | None,
    ) -> list[MemberView]:
        d = self.call(
            "PUT",
            f"/registries/{_seg(registry)}/members",
            json={"user": user, "team": team, "role": role},
        )
        return wire.many(d, wire.member)

    def registry_members(self, registry: str) -> list[MemberView]:
        return wire.many(self.call("GET", f"/registries/{_seg(registry)}/members"), wire.member)

    def protect_alias(self, registry: str, alias: str) -> list[str]:
        d = self.call(
            "POST",
            f"/registries/{_seg(registry)}/protected-aliases",
            json={"alias": alias},
            idempotent=True,
        )
        return list(d["protected_aliases"])

    def unprotect_alias(self, registry: str, alias: str) -> list[str]:
        path = f"/registries/{_seg(registry)}/protected-aliases/{_seg(alias)}"
        return list(self.call("DELETE", path)["protected_aliases"])

    # -- collections -----------------------------------------------------------------
    def _coll(self, registry: str, name: str) -> str:
        return f"/registries/{_seg(registry)}/collections/{_seg(name)}"

    def get_collection(self, registry: str, name: str) -> Any:
        return wire.collection(self.call("GET", self._coll(registry, name)))

    def update_collection(
        self,
        registry: str,
        name: str,
        *,
        description: str | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> Any:
        body = {
            "description": description,
            "add_tags": list(add_tags),
            "remove_tags": list(remove_tags),
        }
        return wire.collection(self.call("PATCH", self._coll(registry, name), json=body))

    def delete_collection(self, registry: str, name: str) -> None:
        self.call("DELETE", self._coll(registry, name))

    # -- versions --------------------------------------------------------------------
    def log_version(
        self,
        *,
        entity: str,
        project: str,
        name: str,
        type: str,
        files: Sequence[FileEntry],
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_key: str | None = None,
    ) -> VersionView:
        validate_metadata(metadata)  # the in-process backend's error, before any request
        body = {
            "entity": entity,
            "project": project,
            "name": name,
            "type": type,
            "files": [
                {"path": f.path, "digest": f.digest, "size": f.size, "check": f.check}
                for f in files
            ],
            "description": description,
            "metadata": metadata,
            "aliases": list(aliases),
            "tags": list(tags),
            "run_key": run_key,
        }
        return wire.version(self.write("POST", "/versions", body))

    def link(self, membership_id: int, target: str, aliases: Sequence[str] = ()) -> VersionView:
        body = {"target": target, "aliases": list(aliases)}
        return wire.version(self.write("POST", f"/versions/{membership_id}/links", body))

    def change_aliases(
        self,
        membership_id: int,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        exactly: Sequence[str] | None = None,
    ) -> VersionView:
        body = {
            "add": list(add),
            "remove": list(remove),
            "exactly": list(exactly) if exactly is not None else None,
        }
        return wire.version(self.write("POST", f"/versions/{membership_id}/aliases", body))

    def add_aliases(self, membership_id: int, aliases: Sequence[str]) -> VersionView:
        return self.change_aliases(membership_id, add=aliases)

    def remove_aliases(self, membership_id: int, aliases: Sequence[str]) -> VersionView:
        return self.change_aliases(membership_id, remove=aliases)

    def set_aliases(self, membership_id: int, aliases: Sequence[str]) -> VersionView:
        return self.change_aliases(membership_id, exactly=aliases)

    def update_version(
        self,
        membership_id: int,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> VersionView:
        validate_metadata(metadata)  # the in-process backend's error, before any request
        body = {
            "description": description,
            "metadata": metadata,
            "add_tags": list(add_tags),
            "remove_tags": list(remove_tags),
        }
        return wire.version(
            self.call("PATCH", f"/versions/{membership_id}", json=body, idempotent=True)
        )

    def unlink(self, membership_id: int) -> None:
        self.write("POST", f"/versions/{membership_id}/unlink")

    def delete_version(self, membership_id: int) -> None:
        self.call("DELETE", f"/versions/{membership_id}")

    def resolve(self, path: str) -> VersionView:
        return wire.version(self.call("GET", "/resolve", params={"path": path}))

    def get_version(self, membership_id: int) -> VersionView:
        return wire.version(self.call("GET", f"/versions/{membership_id}"))

    def source_of(self, membership_id: int) -> VersionView:
        return wire.version(self.call("GET", f"/versions/{membership_id}/source"))

    def links_of(self, membership_id: int) -> list[VersionView]:
        return wire.many(self.call("GET", f"/versions/{membership_id}/links"), wire.version)

    def files(self, membership_id: int) -> list[FileEntry]:
        return wire.many(self.call("GET", f"/versions/{membership_id}/files"), wire.file_entry)

    def use(self, membership_id: int, run_key: str) -> VersionView:
        d = self.call(
            "POST", f"/versions/{membership_id}/uses", json={"run_key": run_key}, idempotent=True
        )
        return wire.version(d)

    def lineage(self, membership_id: int) -> dict[str, Any]:
        d: dict[str, Any] = self.call("GET", f"/versions/{membership_id}/lineage")
        return d

    def start_run(
        self, entity: str, project: str, run_key: str, job_type: str | None = None
    ) -> str:
        body = {"entity": entity, "project": project, "run_key": run_key, "job_type": job_type}
        return str(self.call("POST", "/runs", json=body, idempotent=True)["run_key"])

    # -- history and search ----------------------------------------------------------
    def history(
        self,
        registry: str,
        collection: str | None = None,
        *,
        alias: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        params = {"collection": collection, "alias": alias, "limit": limit, "cursor": cursor}
        d = self.call(
            "GET",
            f"/registries/{_seg(registry)}/history",
            params={k: v for k, v in params.items() if v is not None},
        )
        return wire.page(d, wire.history_entry)

    def alias_at(self, registry: str, collection: str, alias: str, when: datetime) -> int | None:
        path = f"{self._coll(registry, collection)}/aliases/{_seg(alias)}/at"
        d = self.call("GET", path, params={"when": when.isoformat()})
        return None if d["index"] is None else int(d["index"])

    def _search(self, what: str, body: dict[str, Any], item: Any) -> Page:
        return wire.page(self.call("POST", f"/search/{what}", json=body, idempotent=True), item)

    def find_registries(
        self,
        *,
        filter: dict[str, Any] | None = None,
        order: str | None = "name",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        body = {"filter": filter, "order": order, "cursor": cursor, "limit": limit}
        return self._search("registries", body, wire.registry)

    def find_collections(
        self,
        *,
        registry_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        order: str | None = "name",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        body = {
            "registry_filter": registry_filter,
            "filter": filter,
            "order": order,
            "cursor": cursor,
            "limit": limit,
        }
        return self._search("collections", body, wire.collection)

    def find_versions(
        self,
        *,
        registry_filter: dict[str, Any] | None = None,
        collection_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        order: str | None = "-created_at",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        body = {
            "registry_filter": registry_filter,
            "collection_filter": collection_filter,
            "filter": filter,
            "order": order,
            "cursor": cursor,
            "limit": limit,
        }
        return self._search("versions", body, wire.version)

    # -- automations -----------------------------------------------------------------
    def create_automation(
        self,
        *,
        registry: str,
        name: str,
        event: str,
        action: str,
        target: str,
        collection: str | None = None,
        filter_kind: str | None = None,
        filter_value: str | None = None,
        access_token: str | None = None,
        signing_secret: str | None = None,
        secrets: Mapping[str, str] | None = None,
        payload_template: str | None = None,
        description: str = "",
        enabled: bool = True,
    ) -> AutomationView:
        body = {
            "name": name,
            "event": event,
            "action": action,
            "target": target,
            "collection": collection,
            "filter_kind": filter_kind,
            "filter_value": filter_value,
            "access_token": access_token,
            "signing_secret": signing_secret,
            "secrets": dict(secrets or {}),
            "payload_template": payload_template,
            "description": description,
            "enabled": enabled,
        }
        # Not retried once sent: a second create would meet the first's name.
        d = self.call("POST", f"/registries/{_seg(registry)}/automations", json=body)
        return wire.automation(d)

    def automations(self, registry: str) -> list[AutomationView]:
        d = self.call("GET", f"/registries/{_seg(registry)}/automations")
        return wire.many(d, wire.automation)

    def get_automation(self, automation_id: int) -> AutomationView:
        return wire.automation(self.call("GET", f"/automations/{int(automation_id)}"))

    def set_automation_enabled(self, automation_id: int, enabled: bool) -> AutomationView:
        d = self.call(
            "PATCH",
            f"/automations/{int(automation_id)}",
            json={"enabled": enabled},
            idempotent=True,
        )
        return wire.automation(d)

    def delete_automation(self, automation_id: int) -> None:
        self.call("DELETE", f"/automations/{int(automation_id)}")

    def test_automation(self, automation_id: int) -> DeliveryView:
        return wire.delivery(self.call("POST", f"/automations/{int(automation_id)}/test"))

    def deliveries(self, automation_id: int, *, limit: int = 100) -> list[DeliveryView]:
        d = self.call(
            "GET", f"/automations/{int(automation_id)}/deliveries", params={"limit": limit}
        )
        return wire.many(d, wire.delivery)

    def get_delivery(self, delivery_id: str) -> DeliveryView:
        return wire.delivery(self.call("GET", f"/deliveries/{_seg(delivery_id)}"))

    def delivery_attempts(self, delivery_id: str) -> list[AttemptView]:
        d = self.call("GET", f"/deliveries/{_seg(delivery_id)}/attempts")
        return wire.many(d, wire.attempt)

    def redeliver(self, delivery_id: str) -> DeliveryView:
        return wire.delivery(self.call("POST", f"/deliveries/{_seg(delivery_id)}/redeliver"))


def error_of(response: httpx.Response) -> RegaliaError:
    """The :class:`RegaliaError` a server's error envelope describes."""
    try:
        body = response.json()
        err = body["error"]
        return from_dict(err)
    except (ValueError, KeyError, TypeError):
        text = response.text[:200]
        return RegaliaError(f"HTTP {response.status_code} from the server: {text}")
