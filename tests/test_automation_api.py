"""Automations through the SDK (in this process and over HTTP), the REST API and
the CLI: create, list, disable, test, history, each try, redeliver, delete; on
SQLite and PostgreSQL, delivered by a worker to a real receiver on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import re

import httpx
import pytest
from automation_helpers import Receiver, drain
from click.testing import CliRunner

import regalia
from regalia.config import Settings
from regalia.service import Service


@pytest.fixture
def settings(settings):
    """Receivers in these tests live on loopback."""
    return dataclasses.replace(settings, automation_allow_private=True)


@pytest.fixture
def live(settings, monkeypatch) -> Service:
    """A service on the real clock: the worker that sends."""
    monkeypatch.setenv("REGALIA_AUTOMATION_ALLOW_PRIVATE", "1")
    svc = Service(settings)
    yield svc
    svc.close()


def log_and_link(tmp_path, alias: str) -> regalia.Artifact:
    (tmp_path / "w.bin").write_bytes(b"weights")
    with regalia.init(project="zoo") as run:
        art = regalia.Artifact("net", type="model")
        art.add_file(str(tmp_path / "w.bin"))
        run.log_artifact(art)
        return run.link_artifact(art, "wandb-registry-model/zoo", aliases=[alias])


def test_the_sdk_manages_an_automation_and_its_deliveries(sdk_env, live, tmp_path):
    api = regalia.Api()
    reg = api.registry("model")
    with Receiver([(200, {})]) as rx:
        hook = reg.create_automation(
            "to-prod", event="ADD_ARTIFACT_ALIAS", action="webhook", target=rx.url,
            filter_kind="alias_regex", filter_value="^prod", signing_secret="sign-me",
            access_token="tok-123",
        )  # fmt: skip
        assert [a.name for a in reg.automations()] == ["to-prod"]
        assert api.automation(hook.id).target == rx.url.rsplit("/", 1)[0] + "/…"
        assert "sign-me" not in repr(hook._view) and "tok-123" not in repr(hook._view)

        log_and_link(tmp_path, "production")
        drain(live, lambda: all(d.status != "pending" for d in hook.deliveries()))
        [first] = hook.deliveries()
        assert (first.status, first.response_code, first.attempts) == ("succeeded", 200, 1)
        [attempt] = first.tries()
        assert (attempt.attempt, attempt.response_code, attempt.excerpt) == (1, 200, "ok")

        again = first.redeliver()
        assert again.id != first.id and again.status == "pending"
        drain(live, lambda: again.load().status != "pending")
        assert again.status == "succeeded"
        sent = [json.loads(body) for _t, _h, body in rx.requests]
        assert [b["alias"] for b in sent] == ["production", "production"]
        ids = [h["X-Regalia-Delivery"] for _t, h, _b in rx.requests]
        assert ids == [first.id, again.id]

        hook.disable()
        assert not api.automation(hook.id).enabled
        log_and_link(tmp_path, "production-eu")  # disabled: nothing queued
        assert len(hook.deliveries()) == 2
        test = hook.enable().test()
        assert test.is_test
        drain(live, lambda: test.load().status != "pending")
        assert len(rx.requests) == 3
        hook.delete()
        assert reg.automations() == []


def test_the_rest_api_answers_with_statuses_and_clear_errors(settings, service, owner):
    from servers import ThreadServer

    service.create_registry(owner, "secret", visibility="restricted")
    _, viewer_key = service.create_user(owner, "vera")
    service.set_registry_role(owner, "model", user="vera", role="viewer")
    owner_key = service.create_api_key(owner)
    with ThreadServer(settings, service) as server:
        as_owner = httpx.Client(base_url=server.url + "/api/v1",
                                headers={"Authorization": f"Bearer {owner_key}"})  # fmt: skip
        as_viewer = httpx.Client(base_url=server.url + "/api/v1",
                                 headers={"Authorization": f"Bearer {viewer_key}"})  # fmt: skip
        body = {"name": "n", "event": "LINK_ARTIFACT", "action": "webhook",
                "target": "http://127.0.0.1:9/hook", "secrets": {"DEPLOY_KEY": "k-1"}}  # fmt: skip
        r = as_owner.post("/registries/model/automations", json=body)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["secret_names"] == ["DEPLOY_KEY"] and "k-1" not in r.text

        r = as_owner.post("/registries/model/automations", json=body | {"event": "ON_FIRE"})
        assert r.status_code == 400
        assert "unknown event 'ON_FIRE'" in r.json()["error"]["message"]
        r = as_owner.post("/registries/model/automations", json=body)
        assert r.status_code == 409

        assert as_viewer.get("/registries/model/automations").json()[0]["name"] == "n"
        r = as_viewer.post("/registries/model/automations", json=body | {"name": "m"})
        assert r.status_code == 403 and "member" in r.json()["error"]["message"]
        assert as_viewer.post(f"/automations/{created['id']}/test").status_code == 403
        assert as_viewer.get("/registries/secret/automations").status_code == 404

        r = as_owner.post(f"/automations/{created['id']}/test")
        assert r.status_code == 202
        delivery = r.json()["id"]
        assert as_viewer.get(f"/deliveries/{delivery}").json()["status"] == "pending"
        assert as_owner.get(f"/deliveries/{delivery}/attempts").json() == []
        assert as_owner.get("/deliveries/nope").status_code == 404
        r = as_owner.patch(f"/automations/{created['id']}", json={"enabled": False})
        assert r.json()["enabled"] is False
        assert as_owner.delete(f"/automations/{created['id']}").status_code == 200
        assert as_owner.get(f"/automations/{created['id']}").status_code == 404
        assert as_owner.get(f"/deliveries/{delivery}").status_code == 404


def test_a_private_target_is_refused_unless_allowed(settings, owner):
    strict = Service(dataclasses.replace(settings, automation_allow_private=False))
    try:
        from regalia.errors import InvalidRequest

        with pytest.raises(InvalidRequest, match="REGALIA_AUTOMATION_ALLOW_PRIVATE"):
            strict.create_automation(owner, registry="model", name="x", event="LINK_ARTIFACT",
                                     action="webhook", target="http://10.0.0.8/hook")  # fmt: skip
    finally:
        strict.close()


def test_the_cli_session(sdk_env: Settings, live, tmp_path, monkeypatch):
    from regalia.cli.main import cli as command

    monkeypatch.setenv("DEPLOY_KEY", "from-the-env")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(command, list(args), catch_exceptions=False)
        assert result.exit_code == code, f"{args}: {result.output}"
        return result.output

    template = tmp_path / "payload.json"
    template.write_text('{"who": "${event_author}", "what": "${alias}", "key": "${DEPLOY_KEY}"}')
    with Receiver([(500, {}), (200, {})]) as rx:
        out = run("automation", "create", "wandb-registry-model", "deploy",
                  "--event", "add_artifact_alias", "--alias-regex", "^prod", "--webhook", rx.url,
                  "--secret", "DEPLOY_KEY", "--payload-template", f"@{template}")  # fmt: skip
        auto_id = re.search(r"Created automation (\d+) 'deploy'", out).group(1)
        assert f"-> webhook {rx.url.rsplit('/', 1)[0]}/…" in out and "from-the-env" not in out
        listing = run("automation", "list", "model")
        assert re.search(rf"^{auto_id}\s+deploy\s+model \(all\)\s+ADD_ARTIFACT_ALIAS\s+"
                         r"alias_regex=\^prod\s+webhook", listing, re.M)  # fmt: skip
        err = run("automation", "create", "model", "x", "--event", "LINK_ARTIFACT", code=1)
        assert "give exactly one of --slack URL or --webhook URL" in err

        log_and_link(tmp_path, "production")
        drain(live, lambda: "pending" not in run("automation", "history", auto_id))
        history = run("automation", "history", auto_id, "--payloads")
        assert re.search(r"ADD_ARTIFACT_ALIAS\s+succeeded\s+2\s+200", history), history
        assert '"key":"********"' in history  # masked in history, sent in full
        assert json.loads(rx.requests[-1][2])["key"] == "from-the-env"
        delivery = json.loads(run("automation", "history", auto_id, "--json"))[0]["id"]
        tries = run("automation", "attempts", delivery)
        assert re.search(r"^1\s.*\s500\s+HTTP 500: ok$", tries, re.M), tries
        assert re.search(r"^2\s.*\s200\s+ok$", tries, re.M), tries

        assert "is disabled" in run("automation", "disable", auto_id)
        assert "is enabled" in run("automation", "enable", auto_id)
        out = run("automation", "redeliver", delivery)
        assert f"(again: {delivery})" in out
        drain(live, lambda: "pending" not in run("automation", "history", auto_id))
        assert len(rx.requests) == 3
        assert run("automation", "rm", auto_id) == f"Deleted automation {auto_id}.\n"
        assert run("automation", "list", "model") == "(no automations)\n"
        err = run("automation", "enable", auto_id, code=1)
        assert f"automation {auto_id} not found" in err


def test_delivery_settings_come_from_the_environment(monkeypatch, tmp_path):
    from regalia.errors import InvalidRequest
    from regalia.service.delivery import DeliveryPolicy

    monkeypatch.setenv("REGALIA_HOME", str(tmp_path))
    monkeypatch.setenv("REGALIA_AUTOMATION_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("REGALIA_AUTOMATION_TIMEOUT", "2.5")
    monkeypatch.setenv("REGALIA_AUTOMATION_WEBHOOK_RATE", "0")
    policy = DeliveryPolicy.for_settings(Settings.from_env())
    assert (policy.max_attempts, policy.timeout_s, policy.lease_s) == (3, 2.5, 15.0)
    assert (policy.webhook_rate, policy.slack_rate) == (0, 1.0)
    monkeypatch.setenv("REGALIA_AUTOMATION_MAX_ATTEMPTS", "zero")
    with pytest.raises(InvalidRequest, match=r"REGALIA_AUTOMATION_MAX_ATTEMPTS='zero': it must "
                                             r"be an integer of at least 1"):  # fmt: skip
        Settings.from_env()
