"""SPEC §5 deliveries, sent by the worker to real HTTP receivers on 127.0.0.1:
retries with backoff, Retry-After, the final failed state, signatures,
access tokens and payload templates, Slack messages."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from automation_helpers import FAST, Receiver, drain

from regalia.core.automations import VARIABLES, verify_signature
from regalia.service import Service
from regalia.store.models import Delivery


@pytest.fixture
def live(settings) -> Iterator[Service]:
    """A service on the real clock (retries wait real time), loopback allowed."""
    svc = Service(dataclasses.replace(settings, automation_allow_private=True))
    yield svc
    svc.close()


def setup(svc: Service, make_version, **automation) -> tuple[int, int]:
    owner = svc.ensure_org()
    if "filter_kind" not in automation:  # not the `latest` the link moves
        automation |= {"filter_kind": "alias_regex", "filter_value": "^(production|staging)$"}
    auto = svc.create_automation(owner, registry="model", name="hook",
                                 event="ADD_ARTIFACT_ALIAS", **automation)  # fmt: skip
    v = make_version.__class__(svc, make_version.root)(owner, metadata={"epochs": 3})
    link = svc.link(owner, v.membership_id, "wandb-registry-model/zoo")
    return auto.id, link.membership_id


def only(svc: Service, automation_id: int):
    owner = svc.ensure_org()
    return [d for d in svc.deliveries(owner, automation_id) if not d.is_test]


def test_a_receiver_failing_three_times_gets_one_success_after_four_tries(live, make_version):
    with Receiver([(500, {}), (502, {}), (503, {}), (200, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url,
                          filter_kind="alias_regex", filter_value="^prod")  # fmt: skip
        live.add_aliases(live.ensure_org(), mid, ["production"])
        drain(live, lambda: only(live, auto)[0].status != "pending")
    [d] = only(live, auto)
    assert (d.status, d.attempts, d.response_code, d.error) == ("succeeded", 4, 200, None)
    assert len(rx.requests) == 4
    ids = {h["X-Regalia-Delivery"] for _t, h, _b in rx.requests}
    assert ids == {d.id}  # every try carries the same id: the receiver deduplicates on it


def test_a_receiver_down_for_the_whole_budget_ends_failed_with_the_error(live, make_version):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    auto, mid = setup(live, make_version, action="webhook", target=f"http://127.0.0.1:{port}/x")
    live.add_aliases(live.ensure_org(), mid, ["staging"])
    drain(live, lambda: only(live, auto)[0].status != "pending")
    [d] = only(live, auto)
    assert (d.status, d.attempts, d.response_code) == ("failed", FAST.max_attempts, None)
    assert "ConnectError" in (d.error or "")


def test_a_client_error_is_final_and_shows_the_answer(live, make_version):
    with Receiver([(404, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url)
        live.add_aliases(live.ensure_org(), mid, ["staging"])
        drain(live, lambda: only(live, auto)[0].status != "pending")
    [d] = only(live, auto)
    assert (d.status, d.attempts, d.response_code) == ("failed", 1, 404)
    assert d.error == "HTTP 404: ok"


def test_429_with_retry_after_is_obeyed(live, make_version):
    with Receiver([(429, {"Retry-After": "1"}), (200, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url)
        live.add_aliases(live.ensure_org(), mid, ["staging"])
        drain(live, lambda: only(live, auto)[0].status != "pending")
    [d] = only(live, auto)
    assert (d.status, d.attempts) == ("succeeded", 2)
    waited = rx.requests[1][0] - rx.requests[0][0]
    assert 1.0 <= waited < 5, waited  # not the 0.05 s backoff: what the receiver asked for


def test_one_target_gets_messages_no_faster_than_its_rate(live, make_version):
    """Slack's pace (no burst): one message per 1/rate seconds."""
    paced = dataclasses.replace(FAST, slack_rate=2)  # one message per 0.5 s
    with Receiver([(200, {})]) as rx:
        auto, mid = setup(live, make_version, action="slack", target=rx.url,
                          filter_kind="alias_regex", filter_value="^s[0-9]$")  # fmt: skip
        owner = live.ensure_org()
        live.add_aliases(owner, mid, [f"s{i}" for i in range(4)])  # four events, one target
        drain(live, lambda: all(d.status != "pending" for d in only(live, auto)), policy=paced)
    assert len(rx.requests) == 4
    gaps = [b[0] - a[0] for a, b in zip(rx.requests, rx.requests[1:], strict=False)]
    assert min(gaps) >= 0.45, gaps


def test_a_fast_webhook_keeps_its_rate_after_a_half_second_burst(live, make_version):
    paced = dataclasses.replace(FAST, webhook_rate=10)  # burst of 5, then one per 0.1 s
    with Receiver([(200, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url,
                          filter_kind="alias_regex", filter_value="^s[0-9]+$")  # fmt: skip
        owner = live.ensure_org()
        live.add_aliases(owner, mid, [f"s{i}" for i in range(20)])
        drain(live, lambda: all(d.status != "pending" for d in only(live, auto)), policy=paced)
    times = [t for t, _h, _b in rx.requests]
    assert len(times) == 20
    assert times[-1] - times[0] >= (20 - 5) * 0.1 - 0.05
    for start in times:  # no one-second window holds more than rate + burst
        assert sum(1 for t in times if start <= t < start + 1.0) <= 15


def test_signature_token_and_template_as_the_receiver_sees_them(live, make_version):
    template = json.dumps(
        {
            "text": "${event_author} moved ${alias} to ${artifact_version_string}",
            "epochs": "${artifact_metadata.epochs}",
            "key": "${DEPLOY_KEY}",
        }
    )
    with Receiver([(200, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url,
                          access_token="tok-1", signing_secret="sign-2",
                          secrets={"DEPLOY_KEY": "dk-3"}, payload_template=template)  # fmt: skip
        live.add_aliases(live.ensure_org(), mid, ["staging"])
        drain(live, lambda: only(live, auto)[0].status != "pending")
    [(_t, headers, body)] = rx.requests
    assert verify_signature("sign-2", headers, body)
    recipe = documented_verify()
    assert recipe("sign-2", headers, body)  # the recipe in docs/automations.md, as written
    assert not recipe("sign-2", headers, body + b" ")
    assert not recipe("other", headers, body)
    assert headers["Authorization"] == "Bearer tok-1"
    assert headers["X-Regalia-Event"] == "ADD_ARTIFACT_ALIAS"
    owner = live.ensure_org().name
    assert json.loads(body) == {"text": f"{owner} moved staging to wandb-registry-model/zoo:v0",
                                "epochs": 3, "key": "dk-3"}  # fmt: skip
    [d] = only(live, auto)
    assert "dk-3" not in d.payload and "********" in d.payload  # history masks secrets


def test_a_template_with_every_variable_arrives_rendered(live, make_version):
    """Each SPEC §5 variable, a metadata key, a secret and the access token, as
    the receiver gets them (a whole-placeholder string keeps the value's type)."""
    names = [*VARIABLES, "artifact_metadata.epochs", "artifact_metadata.missing",
             "DEPLOY_KEY", "ACCESS_TOKEN"]  # fmt: skip
    template = {name: f"${{{name}}}" for name in names} | {
        "line": "${alias} on v=${artifact_version}"
    }
    with Receiver([(200, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url,
                          access_token="tok-1", secrets={"DEPLOY_KEY": "dk-3"},
                          payload_template=json.dumps(template))  # fmt: skip
        live.add_aliases(live.ensure_org(), mid, ["production"])
        drain(live, lambda: only(live, auto)[0].status != "pending")
    [(_t, _headers, body)] = rx.requests
    owner = live.ensure_org().name
    assert json.loads(body) == {
        "event_type": "ADD_ARTIFACT_ALIAS",
        "event_author": owner,
        "alias": "production",
        "tag": None,
        "registry_name": "model",
        "artifact_collection_name": "zoo",
        "artifact_version": "v0",
        "artifact_version_string": "wandb-registry-model/zoo:v0",
        "entity_name": owner,
        "project_name": "proj",
        "artifact_metadata.epochs": 3,
        "artifact_metadata.missing": None,
        "DEPLOY_KEY": "dk-3",
        "ACCESS_TOKEN": "tok-1",
        "line": "production on v=v0",
    }


def documented_verify():
    """The ``verify`` function of docs/automations.md, run as a receiver would copy it."""
    docs = (Path(__file__).parent.parent / "docs" / "automations.md").read_text()
    [code] = [b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "def verify" in b]
    scope: dict[str, object] = {}
    exec(code, scope)
    return scope["verify"]


def test_slack_gets_a_readable_message_and_test_sends_a_sample(live, make_version):
    live.settings = dataclasses.replace(live.settings, public_url="http://regalia.example")
    with Receiver([(200, {})]) as rx:
        auto, mid = setup(live, make_version, action="slack", target=rx.url)
        owner = live.ensure_org()
        live.add_aliases(owner, mid, ["production"])
        live.test_automation(owner, auto)
        drain(live, lambda: all(d.status != "pending" for d in live.deliveries(owner, auto)))
    texts = sorted(json.loads(b)["text"] for _t, _h, b in rx.requests)
    assert texts[0] == (f"*{owner.name}* added the alias `production` to "
                        "<http://regalia.example/registries/model/collections/zoo/v0|"
                        "wandb-registry-model/zoo:v0>")  # fmt: skip
    assert texts[1].startswith("[test] ")


def test_regalia_server_sends_deliveries_itself(settings, tmp_path, make_version):
    """The worker inside a `regalia server` process picks up what a change queued."""
    import os

    from servers import ServerProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env |= {"REGALIA_HOME": str(settings.home), "REGALIA_DATABASE_URL": settings.database_url,
            "REGALIA_ORG": settings.org_name, "REGALIA_AUTOMATION_ALLOW_PRIVATE": "1"}  # fmt: skip
    with Receiver([(200, {})]) as rx, ServerProcess(env, log=tmp_path / "server.log"):
        svc = Service(dataclasses.replace(settings, automation_allow_private=True))
        try:
            auto, mid = setup(svc, make_version, action="webhook", target=rx.url)
            svc.add_aliases(svc.ensure_org(), mid, ["production"])
            deadline = time.monotonic() + 20
            while only(svc, auto)[0].status == "pending":
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.05)
            [d] = only(svc, auto)
        finally:
            svc.close()
    assert (d.status, d.attempts) == ("succeeded", 1)
    assert json.loads(rx.requests[0][2])["alias"] == "production"


def test_a_worker_without_the_key_leaves_deliveries_to_one_that_has_it(
    live, make_version, settings, tmp_path
):
    with Receiver([(200, {})]) as rx:
        auto, mid = setup(live, make_version, action="webhook", target=rx.url)
        live.add_aliases(live.ensure_org(), mid, ["production"])
        other_home = dataclasses.replace(live.settings, home=tmp_path / "other-home")
        stranger = Service(other_home)  # same database, a different secret key
        try:
            jobs = stranger.claim_deliveries("stranger", FAST).jobs
        finally:
            stranger.close()
        assert jobs == []
        [d] = only(live, auto)
        assert (d.status, d.attempts) == ("pending", 0)  # not failed: its key is elsewhere
        assert rx.requests == []
        live.db.write(lambda repo: repo.s.execute(  # skip the wait the stranger imposed
            Delivery.__table__.update().values(next_attempt_at=Delivery.created_at)
            .where(Delivery.public_id == d.id)))  # fmt: skip
        drain(live, lambda: only(live, auto)[0].status != "pending")
    assert only(live, auto)[0].status == "succeeded"
