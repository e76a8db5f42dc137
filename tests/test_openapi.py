"""The OpenAPI document tells the truth (finding 11): the statuses the API
really answers (400-413, no 422), its error envelope, the name rules of SPEC
§2 and the bounds of ids, the media types of downloads and metrics; and the
answers a server gives match what the document says, over HTTP on SQLite and
PostgreSQL. ``test_schemathesis.py`` checks the same at scale."""

from __future__ import annotations

import json
import re
import string

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import ThreadServer

from regalia.blobs.base import validate_digest
from regalia.core import names
from regalia.errors import RegaliaError
from regalia.server.params import MAX_ID

VALIDATORS = {
    "registry": (names.REGISTRY_NAME_RULE, names.validate_registry_name),
    "artifact": (names.ARTIFACT_NAME_RULE, names.validate_artifact_name),
    "entity": (names.ENTITY_NAME_RULE, names.validate_entity_name),
    "alias": (names.ALIAS_RULE, names.validate_alias),
    "alias_ref": (names.ALIAS_REF_RULE, lambda a: names.validate_alias(a, allow_managed=True)),
    "tag": (names.TAG_RULE, names.validate_tag),
    "digest": (names.DIGEST_RULE, validate_digest),
}


@pytest.fixture
def server(settings, service):
    owner = service.ensure_org()
    key = service.create_api_key(owner)
    with (
        ThreadServer(settings, service) as srv,
        httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client,
    ):
        yield client, owner


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def _documented(doc, method: str, path: str) -> dict:
    return doc["paths"][path][method]["responses"]


def test_finding11_openapi_lists_the_statuses_the_api_answers_not_422(server):
    client, _ = server
    doc = client.get("/openapi.json").json()
    assert '"422"' not in json.dumps(doc)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    envelope = doc["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    assert envelope["properties"]["error"]["required"] == ["code", "message", "details"]
    error_ref = {"$ref": "#/components/schemas/Error"}
    for method, path, operation in _operations(doc):
        responses = operation["responses"]
        if operation.get("parameters") or "requestBody" in operation:
            assert "400" in responses, (method, path)
        if operation.get("security"):
            assert {"401", "503"} <= set(responses), (method, path)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400 and status != "416":
                assert response["content"] == {"application/json": {"schema": error_ref}}
            if status.startswith("2"):
                assert response.get("content"), (method, path, status)

    # What the server answers is what the document lists.
    def answer(method: str, path: str, url: str, **kwargs) -> None:
        response = client.request(method.upper(), url, **kwargs)
        assert str(response.status_code) in _documented(doc, method, path), (url, response)
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "message", "details"}

    answer("post", "/api/v1/registries", "/api/v1/registries", json={"name": "a/b"})  # 400
    answer("post", "/api/v1/registries", "/api/v1/registries", json={"nam": "x"})  # 400
    answer("get", "/api/v1/registries/{name}", "/api/v1/registries/nope")  # 404
    answer("post", "/api/v1/registries", "/api/v1/registries", json={"name": "model"})  # 409
    answer("get", "/api/v1/viewer", "/api/v1/viewer", headers={"Authorization": "Bearer no"})
    big = "/api/v1/versions/" + str(2**64)
    answer("get", "/api/v1/versions/{membership_id}", big)  # 400, not 500
    too_big = b"[" + b"0," * (9 * 1024 * 1024) + b"0]"
    answer("post", "/api/v1/search/registries", "/api/v1/search/registries", content=too_big)


def test_the_document_states_media_types_bounds_and_name_rules(server):
    client, _ = server
    doc = client.get("/openapi.json").json()
    metrics = _documented(doc, "get", "/metrics")["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    download = doc["paths"]["/api/v1/versions/{membership_id}/blobs/{digest}"]["get"]
    assert "application/octet-stream" in download["responses"]["200"]["content"]
    assert {"200", "206", "416"} <= set(download["responses"])
    params = {p["name"]: p["schema"] for p in download["parameters"]}
    assert params["membership_id"]["minimum"] == 1
    assert params["membership_id"]["maximum"] == MAX_ID == 2**63 - 1
    assert params["digest"]["pattern"] == "^[0-9a-f]{64}$"
    assert "Range" in params

    registry = doc["paths"]["/api/v1/registries/{name}"]["get"]["parameters"][0]["schema"]
    assert registry["pattern"] == names.REGISTRY_NAME_RULE.pattern
    assert registry["maxLength"] == names.MAX_REGISTRY_NAME == 113
    body = doc["components"]["schemas"]["NewVersion"]["properties"]
    assert body["name"]["pattern"] == names.ARTIFACT_NAME_RULE.pattern
    assert body["aliases"]["items"]["pattern"] == names.ALIAS_RULE.pattern
    assert body["tags"]["items"]["pattern"] == names.TAG_RULE.pattern
    assert body["tags"]["items"]["maxLength"] == names.MAX_TAG
    file = doc["components"]["schemas"]["File"]["properties"]
    assert file["digest"]["pattern"] == names.DIGEST_RULE.pattern
    version = doc["components"]["schemas"]["VersionView"]
    assert version["additionalProperties"] is False
    assert set(version["required"]) == set(version["properties"])  # to_jsonable sends all


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=140), st.text(string.printable, max_size=140)))
def test_name_patterns_agree_with_the_validators(kind, text):
    """A name the service accepts matches the documented pattern and length;
    on printable ASCII the two agree exactly (the service may refuse more
    Unicode than the pattern says, never less)."""
    rule, validate = VALIDATORS[kind]
    try:
        validate(text)
        accepted = True
    except RegaliaError:
        accepted = False
    documented = re.fullmatch(rule.pattern, text) is not None and len(text) <= rule.max_length
    if accepted:
        assert documented, (kind, text)
    if all(ch in string.printable for ch in text):
        assert documented == accepted, (kind, text)


@pytest.mark.parametrize(
    "kind,examples",
    [
        ("alias", ["production", "prod-1", "v1x", "latest2", "ä"]),
        ("tag", ["a", "two words", "x-y_z"]),
        ("registry", ["Model", "My registry", "a.b"]),
    ],
)
def test_name_patterns_accept_typical_names(kind, examples):
    rule, validate = VALIDATORS[kind]
    for name in examples:
        validate(name)
        assert re.fullmatch(rule.pattern, name), name


def test_nul_in_text_is_a_clear_400_not_a_database_failure(server):
    client, owner = server
    cases = [
        ("POST", "/api/v1/runs", {"entity": owner.name, "project": "p", "run_key": "r\x00"}),
        ("POST", "/api/v1/registries", {"name": "fine", "description": "a\x00b"}),
        ("POST", "/api/v1/search/versions", {"filter": {"metadata.k\x00": 1}}),
        ("POST", "/api/v1/search/versions", {"filter": {"alias": {"$in": ["x", "\x00"]}}}),
    ]
    for method, url, body in cases:
        response = client.request(method, url, json=body)
        assert response.status_code == 400, (url, body, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and "NUL" in error["message"], error
    for url in ("/api/v1/search?q=a%00", "/api/v1/deliveries/%00", "/api/v1/resolve?path=x%00"):
        response = client.get(url)
        assert response.status_code == 400, (url, response.text)
        assert "NUL" in response.json()["error"]["message"]
    assert client.get("/api/v1/registries/fine").status_code == 404  # nothing was written


def test_download_range_errors_are_documented_answers(server, make_version, service):
    client, owner = server
    version = make_version(owner, "0123456789")
    digest = service.files(owner, version.membership_id)[0].digest
    url = f"/api/v1/versions/{version.membership_id}/blobs/{digest}"
    part = client.get(url, headers={"Range": "bytes=2-4"})
    assert (part.status_code, part.content) == (206, b"234")
    assert part.headers["x-regalia-sha256"] == digest
    malformed = client.get(url, headers={"Range": "bytes=5-2"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["details"] == {"rule": "range"}
    past_end = client.get(url, headers={"Range": "bytes=50-"})
    assert past_end.status_code == 416
    assert past_end.headers["content-range"] == "bytes */10"
