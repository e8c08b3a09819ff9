"""Run the shipped templates (workflows/, rendered from the chart) with the real binary
against OpenBao and the emulator, and check the end state."""

from __future__ import annotations

import copy
import uuid

import pytest

from argo import Runner, StepFailed
from conftest import eso_controller


def by_kind(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def consumed(cluster, ns, name) -> bool:
    secret = cluster.secret(ns, name)
    return bool(secret) and secret["metadata"].get("labels", {}).get("secops.dev/state") == "consumed"


def test_handover_fans_out_per_item_and_per_shard(services, runner):
    cluster, vault = services["cluster"], services["vault"]
    for ns in ("wf-items", "wf-shards"):
        cluster.namespace(ns)
        for i in range(5):
            cluster.bootstrap(ns, f"s{i}", f"{ns}/s{i}", f"value-{ns}-{i}")
    runner.submit("secops-bootstrap-handover", {"namespaces": "wf-items", "shards": "0"})
    steps = [r["args"][0] for r in runner.runs]
    assert steps.count("write-vault") == 5 and steps.count("mark-consumed") == 5, steps
    runner.submit("secops-bootstrap-handover", {"namespaces": "wf-shards", "shards": "3"})
    shards = [r["args"] for r in runner.runs if r["args"][0] == "handover"]
    # One step per shard holding work (an empty shard, by uid hash, starts no pod).
    assert 1 <= len(shards) <= 3 and len({a[a.index("--shard") + 1] for a in shards}) == len(shards), shards
    for ns in ("wf-items", "wf-shards"):
        for i in range(5):
            assert consumed(cluster, ns, f"s{i}"), f"{ns}/s{i}"
            assert vault.current_version("secret", f"{ns}/s{i}") == 1
    # A second run finds nothing to do.
    before = len(runner.runs)
    runner.submit("secops-bootstrap-handover", {"namespaces": "wf-items", "shards": "0"})
    assert [r["args"][0] for r in runner.runs[before:]] == ["read-bootstrap"]


def test_rotation_cron_and_sensors_write_once_per_id(services, runner, workflow_docs):
    cluster, vault = services["cluster"], services["vault"]
    cluster.namespace("default")
    cluster.bootstrap("default", "db-password", "default/db-password", "initial-value")
    cluster.create({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db-password", "namespace": "default"}, "spec": {}})
    cluster.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "default"}, "spec": {"template": {"metadata": {}}}})
    reconcile = by_kind(workflow_docs, "Sensor", "secops-reconcile")[0]
    calendar_event = {"context": {"id": str(uuid.uuid4()), "type": "calendar", "source": "secops-calendar"}, "data": {"eventTime": "2026-11-25T00:00:00Z"}}
    submitted = Runner.fire(reconcile, "tick", calendar_event)
    assert [w["spec"]["workflowTemplateRef"]["name"] for w in submitted] == ["secops-bootstrap-handover", "secops-push-secret"]
    for workflow in submitted:
        runner.run_workflow(workflow)
    assert consumed(cluster, "default", "db-password")

    with eso_controller(cluster, ["default"]):
        rotate_on_every_trigger(cluster, vault, runner, workflow_docs)


def rotate_on_every_trigger(cluster, vault, runner, workflow_docs):
    cron = by_kind(workflow_docs, "CronWorkflow")[0]
    arguments = {p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]}
    uid = str(uuid.uuid4())
    runner.submit("secops-rotate", arguments, uid=uid)
    runner.submit("secops-rotate", arguments, uid=uid)  # the same Workflow retried
    assert vault.current_version("secret", "default/db-password") == 2
    runner.submit("secops-rotate", arguments)  # the next schedule: a new uid
    assert vault.current_version("secret", "default/db-password") == 3
    code, deploy = cluster.request("GET", "/apis/apps/v1/namespaces/default/deployments/api")
    assert "secops.dev/restartedAt" in deploy["spec"]["template"]["metadata"]["annotations"]

    # The calendar Sensor schedules rotations only where no CronWorkflow does.
    assert not by_kind(workflow_docs, "Sensor", "secops-rotate-schedule")
    import secops_manifests as m
    without_cron = m.documents(m.render({**m.workflow_values(), "cronWorkflows": {"enabled": False}}))
    schedule = by_kind(without_cron, "Sensor", "secops-rotate-schedule")[0]
    event_id = str(uuid.uuid4())
    fired = Runner.fire(schedule, "rotate-example-db", {"context": {"id": event_id}, "data": {}})
    assert fired[0]["spec"]["arguments"]["parameters"][0] == {"name": "rotation-id", "value": event_id}
    runner.run_workflow(fired[0])
    runner.run_workflow(Runner.fire(schedule, "rotate-example-db", {"context": {"id": event_id}, "data": {}})[0])
    assert vault.current_version("secret", "default/db-password") == 4, "a redelivered event rotates once"

    webhook = by_kind(workflow_docs, "Sensor", "secops-rotate-webhook")[0]
    good = {"context": {"id": "x"}, "data": {"header": {}, "body": {"rotation": "example-db", "rotationId": "req-42"}}}
    fired = Runner.fire(webhook, "request-example-db", good)
    assert fired[0]["spec"]["arguments"]["parameters"][0]["value"] == "req-42"
    runner.run_workflow(fired[0])
    assert vault.current_version("secret", "default/db-password") == 5
    for body in ({"rotation": "example-db", "rotationId": "../../etc"}, {"rotation": "other", "rotationId": "ok"}, {"rotation": "example-db"}):
        assert Runner.fire(webhook, "request-example-db", {"context": {"id": "x"}, "data": {"body": body}}) == [], body


def test_push_named_and_batch(services, runner):
    cluster, vault = services["cluster"], services["vault"]
    cluster.namespace("wf-push")
    cluster.bootstrap("wf-push", "cert", "wf-push/cert", "operator-made", cls="internal")
    cluster.bootstrap("wf-push", "other", "wf-push/other", "operator-made-2", cls="internal")
    runner.submit("secops-push-secret", {"secret": "wf-push/cert"})
    assert vault.current_version("secret", "wf-push/cert") == 1
    assert vault.current_version("secret", "wf-push/other") == 0
    runner.submit("secops-push-secret", {"namespaces": "wf-push"})
    assert vault.current_version("secret", "wf-push/other") == 1
    assert vault.current_version("secret", "wf-push/cert") == 1, "unchanged sources are no-ops"


def test_a_template_that_disagrees_with_the_binary_fails(services, runner):
    cluster = services["cluster"]
    cluster.namespace("wf-broken")
    cluster.bootstrap("wf-broken", "s", "wf-broken/s", "value-broken")
    original = runner.templates["secops-bootstrap-handover"]
    bad_flag = copy.deepcopy(original)
    write = next(t for t in bad_flag["spec"]["templates"] if t["name"] == "write-vault")
    write["container"]["args"] = [a.replace("--expect-uid", "--expected-uid") for a in write["container"]["args"]]
    runner.templates["secops-bootstrap-handover"] = bad_flag
    with pytest.raises(StepFailed, match="exited 2"):
        runner.submit("secops-bootstrap-handover", {"namespaces": "wf-broken", "shards": "0"})
    bad_output = copy.deepcopy(original)
    plan = next(t for t in bad_output["spec"]["templates"] if t["name"] == "read-bootstrap")
    plan["outputs"]["parameters"][0]["valueFrom"]["path"] = "/out/plan.json"
    runner.templates["secops-bootstrap-handover"] = bad_output
    with pytest.raises(StepFailed, match="was not written"):
        runner.submit("secops-bootstrap-handover", {"namespaces": "wf-broken"})
    runner.templates["secops-bootstrap-handover"] = original


def test_vault_setup_template_applies_the_rendered_configmap(services, runner):
    """The WorkflowTemplate's arguments match the CLI: it reads the ConfigMap the chart renders
    and applies it; a second run changes nothing."""
    import json
    import urllib.request

    import secops_manifests as m

    cluster, vault = services["cluster"], services["vault"]
    request = urllib.request.Request(f"{vault.addr}/v1/sys/auth/kubernetes", data=json.dumps({"type": "kubernetes"}).encode(), method="POST", headers={"X-Vault-Token": "root"})
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as error:
        assert error.code == 400, error  # already enabled by an earlier run
    cluster.namespace("secops")
    config = next(d for d in m.documents(m.render(m.workflow_values())) if d["metadata"]["name"] == "secops-vault-policies")
    config["metadata"]["namespace"] = "secops"
    code, body = cluster.request("POST", "/api/v1/namespaces/secops/configmaps", config)
    assert code in (201, 409), body
    outcomes = []
    for _ in range(2):
        before = len(runner.runs)
        runner.submit("secops-vault-setup")
        run = runner.runs[before]
        assert run["args"][0] == "vault-setup" and run["code"] == 0, run
        outcomes.append({i["outcome"] for i in json.loads(run["stdout"])["items"]})
    # Vault is shared by the session: a policy that names no namespace (secops-status) may
    # already be there, as another test's vault-setup applied it.
    assert "applied" in outcomes[0] and outcomes[0] <= {"applied", "unchanged"} and outcomes[1] == {"unchanged"}, outcomes
    assert vault.get("sys/policies/acl/secops-handover")["policy"].startswith("# managed-by: secops")


def test_the_static_role_template_agrees_with_the_binary(services, runner, workflow_docs):
    cron = by_kind(workflow_docs, "CronWorkflow", "secops-rotate-example-pg")[0]
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == "secops-rotate-static-role"
    arguments = {p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]}
    assert arguments["static-role"] == "database/app" and arguments["if-older-than"] == "168h"
    # No database engine in this OpenBao: the flags are accepted (not exit 2) and the role is
    # not found (exit 4); tests/integration/engine.rs rotates a real PostgreSQL role.
    with pytest.raises(StepFailed, match="exited 4"):
        runner.submit("secops-rotate-static-role", arguments)
