"""The names and numbers of the REST API as typed parameters and fields.

Their JSON Schemas come from the rules of SPEC §2 in :mod:`regalia.core.names`,
so the OpenAPI document states the real patterns and lengths. Names are
*documented* here, not validated: the service checks them and its error names
the rule that was broken (``invalid_name``, 400), the same in-process and over
HTTP. Numbers are validated here (pydantic answers 400 ``invalid_request``):
ids are 64-bit columns, so anything past ``2**63 - 1`` can name nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from pydantic import Field, JsonValue

from regalia.core import names
from regalia.core.automations import EventType, FilterKind
from regalia.core.roles import OrgRole, RegistryRole, TeamRole, Visibility
from regalia.service.automations import ACTIONS

MAX_ID = 2**63 - 1  # ids are BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite
MAX_SIZE = 2**63 - 1  # sizes are BIGINT too
MAX_PART = 2**31 - 1  # far more parts than an upload can have (see uploads.MAX_PARTS)


def _rule(rule: names.NameRule) -> Any:
    return Field(json_schema_extra=cast(dict[str, JsonValue], rule.json_schema()))


def _one_of(values: list[str], description: str) -> Any:
    return Field(json_schema_extra={"enum": list[JsonValue](values), "description": description})


RegistryName = Annotated[str, _rule(names.REGISTRY_NAME_RULE)]
ArtifactName = Annotated[str, _rule(names.ARTIFACT_NAME_RULE)]
EntityName = Annotated[str, _rule(names.ENTITY_NAME_RULE)]
Alias = Annotated[str, _rule(names.ALIAS_RULE)]
AliasRef = Annotated[str, _rule(names.ALIAS_REF_RULE)]
Tag = Annotated[str, _rule(names.TAG_RULE)]
Digest = Annotated[str, _rule(names.DIGEST_RULE)]
RegistryTarget = Annotated[str, _rule(names.REGISTRY_TARGET_RULE)]
ArtifactPath = Annotated[str, _rule(names.ARTIFACT_PATH_RULE)]
DIGEST_SCHEMA = names.DIGEST_RULE.json_schema()

Id = Annotated[int, Field(ge=1, le=MAX_ID, description=f"an id (1 to {MAX_ID})")]
Size = Annotated[int, Field(ge=0, le=MAX_SIZE, description="a size in bytes")]
PartNumber = Annotated[int, Field(ge=0, le=MAX_PART, description="a part's number, from 0")]

OrgRoleName = Annotated[str, _one_of([r.value for r in OrgRole], "an organization role")]
TeamRoleName = Annotated[str, _one_of([r.value for r in TeamRole], "a role inside a team")]
RegistryRoleName = Annotated[str, _one_of([r.value for r in RegistryRole], "a registry role")]
VisibilityName = Annotated[str, _one_of([v.value for v in Visibility], "who may see a registry")]
EventName = Annotated[str, _one_of([e.value for e in EventType], "what starts an automation")]
ActionName = Annotated[str, _one_of(list(ACTIONS), "what an automation does")]
FilterKindName = Annotated[str, _one_of([k.value for k in FilterKind], "how events are filtered")]
