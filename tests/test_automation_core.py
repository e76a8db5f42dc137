"""SPEC §5, the parts without a database or network: filters, payload templates,
the documented signature recipe, retry delays and which targets are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from email.utils import formatdate

import pytest

from regalia.core.automations import (
    VARIABLES,
    EventFilter,
    EventType,
    body_bytes,
    parse_retry_after,
    parse_template,
    render,
    retry_delay,
    signature,
    verify_signature,
)
from regalia.core.targets import check_target, redact_url
from regalia.errors import InvalidRequest

VALUES = {
    "event_type": "ADD_ARTIFACT_ALIAS",
    "event_author": "alice",
    "alias": "production-us",
    "tag": None,
    "registry_name": "model",
    "artifact_collection_name": "zoo",
    "artifact_version": "v3",
    "artifact_version_string": "wandb-registry-model/zoo:v3",
    "entity_name": "alice",
    "project_name": "proj",
    "artifact_metadata": {"epochs": 12, "acc": 0.93, "notes": 'say "hi"\n'},
    "TOKEN": "s3cr3t",
}


def test_every_variable_renders_and_whole_placeholders_keep_their_type():
    template = {v: f"${{{v}}}" for v in VARIABLES}
    template |= {
        "epochs": "${artifact_metadata.epochs}",
        "summary": "${artifact_collection_name}:${artifact_version} acc=${artifact_metadata.acc}",
        "notes": "${artifact_metadata.notes}",
        "missing": "${artifact_metadata.nope}",
        "auth": "Bearer ${TOKEN}",
        "nested": [{"who": "${event_author}"}],
    }
    doc = parse_template(json.dumps(template), secret_names={"TOKEN"})
    out = render(doc, VALUES)
    for v in VARIABLES:
        assert out[v] == VALUES[v]
    assert out["epochs"] == 12  # a number stays a number
    assert out["summary"] == "zoo:v3 acc=0.93"
    assert out["notes"] == 'say "hi"\n'  # quotes and newlines cannot break the JSON
    assert out["missing"] is None
    assert out["auth"] == "Bearer s3cr3t"
    assert out["nested"] == [{"who": "alice"}]
    assert json.loads(body_bytes(out)) == out


def test_templates_are_checked_when_created():
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_template('{"a": ${alias}}', set())
    with pytest.raises(InvalidRequest, match=r"unknown variable \$\{aliases\}"):
        parse_template('{"a": "${aliases}"}', set())
    with pytest.raises(InvalidRequest, match=r"unknown variable \$\{TOKEN\}"):
        parse_template('{"a": "${TOKEN}"}', set())  # a secret the automation does not have
    with pytest.raises(InvalidRequest, match="unknown variable"):
        parse_template('{"a": "${artifact_metadata.}"}', set())


def test_the_signature_follows_the_documented_recipe():
    body = body_bytes({"alias": "production"})
    delivery, stamp = "d-1", 1_760_000_000
    expected = hmac.new(b"shh", f"{delivery}.{stamp}.".encode() + body, hashlib.sha256)
    assert signature("shh", delivery, stamp, body) == "sha256=" + expected.hexdigest()
    headers = {
        "x-regalia-delivery": delivery,
        "X-Regalia-Timestamp": str(stamp),
        "X-Regalia-Signature": signature("shh", delivery, stamp, body),
    }
    assert verify_signature("shh", headers, body, now=stamp + 10)
    assert not verify_signature("other", headers, body, now=stamp + 10)
    assert not verify_signature("shh", headers, body + b" ", now=stamp + 10)
    assert not verify_signature("shh", headers | {"x-regalia-delivery": "d-2"}, body, now=stamp)
    assert not verify_signature("shh", headers, body, now=stamp + 301)  # a replay, too late


def test_alias_regex_filters():
    prod = EventFilter.parse(EventType.ADD_ARTIFACT_ALIAS, "alias_regex", "^prod")
    assert prod is not None
    assert prod.matches(alias="production-us", tag=None, link_aliases=[])
    assert not prod.matches(alias="staging", tag=None, link_aliases=[])
    tag = EventFilter.parse(EventType.ADD_ARTIFACT_TAG, "tag_regex", "^(gold|silver)$")
    assert tag is not None and tag.matches(alias=None, tag="gold", link_aliases=[])
    assert not tag.matches(alias=None, tag="golden", link_aliases=[])
    link = EventFilter.parse(EventType.LINK_ARTIFACT, "alias", "Staging")
    assert link is not None
    assert link.matches(alias=None, tag=None, link_aliases=["latest", "staging"])
    assert not link.matches(alias=None, tag=None, link_aliases=["latest"])
    assert EventFilter.parse(EventType.UNLINK_ARTIFACT, None, None) is None


def test_filters_are_checked_when_created():
    with pytest.raises(InvalidRequest, match="is not RE2 syntax"):
        EventFilter.parse(EventType.ADD_ARTIFACT_ALIAS, "alias_regex", "(prod")
    with pytest.raises(InvalidRequest, match="RE2 syntax is required") as err:
        EventFilter.parse(EventType.ADD_ARTIFACT_TAG, "tag_regex", "^prod(?!-old)")
    assert err.value.details["field"] == "filter_value"
    with pytest.raises(InvalidRequest, match="takes only 'tag_regex'"):
        EventFilter.parse(EventType.ADD_ARTIFACT_TAG, "alias_regex", "x")
    with pytest.raises(InvalidRequest, match="takes no filter"):
        EventFilter.parse(EventType.UNLINK_ARTIFACT, "alias", "x")
    with pytest.raises(InvalidRequest, match="unknown filter"):
        EventFilter.parse(EventType.ADD_ARTIFACT_ALIAS, "regex", "x")


def test_retry_delays_grow_with_jitter_and_obey_retry_after():
    rng = random.Random(7)
    for attempt in range(1, 12):
        high = min(60.0, 1.0 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, base_s=1, cap_s=60, rng=rng) for _ in range(50)]
        assert all(1.0 <= d <= high for d in delays)
        if high > 2:
            assert len(set(delays)) > 1  # jittered, so retries do not arrive in lockstep
    assert retry_delay(3, base_s=1, cap_s=60, retry_after_s=7) == 7
    assert parse_retry_after("5") == 5
    assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/x", "http://[::1]/x",
     "http://169.254.169.254/latest", "http://192.168.0.1/"],
)  # fmt: skip
def test_private_and_loopback_targets_are_refused_unless_allowed(url):
    with pytest.raises(InvalidRequest, match="REGALIA_AUTOMATION_ALLOW_PRIVATE"):
        check_target(url, allow_private=False)
    check_target(url, allow_private=True)


def test_only_http_urls_are_targets_and_messages_hide_their_paths():
    for url in ["ftp://example.com/x", "file:///etc/passwd", "hooks.slack.com/x"]:
        with pytest.raises(InvalidRequest, match="not an http"):
            check_target(url, allow_private=True)
    assert redact_url("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/…"


@pytest.mark.parametrize(
    ("kind", "pattern", "sample"),
    [
        ("alias_regex", "^prod", "production"),
        ("alias_regex", "^staging$", "staging"),
        ("alias_regex", "^release-[0-9]+$", "sample"),
        ("alias_regex", "^canary$", "canary"),
        ("tag_regex", "^approved$", "approved"),
        ("alias", "Champion", "Champion"),
    ],
)
def test_a_test_delivery_shows_an_alias_or_tag_its_filter_lets_through(kind, pattern, sample):
    """Not the pattern itself: a test of '^prod' reads 'added the alias production'."""
    event = "ADD_ARTIFACT_TAG" if kind == "tag_regex" else (
        "LINK_ARTIFACT" if kind == "alias" else "ADD_ARTIFACT_ALIAS"
    )  # fmt: skip
    found = EventFilter.parse(EventType(event), kind, pattern)
    assert found is not None and found.sample() == sample
