"""The pods the chart's manifests make, judged by Kubernetes' own rules: which identity a step
runs as, whether it gets an API token, what it schedules, and whether the defaults finish
in time. Each test names the finding it pins."""

from __future__ import annotations

import json
import math
import re

import pytest

import secops_manifests as m
from pods import pod_specs, service_account_of, workflow_pod, would_mount_token

FULL = m.workflow_values()


def docs_for(values):
    return m.documents(m.render(values))


def by_name(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


# -- tokens ----------------------------------------------------------------------------------

def test_every_step_pod_gets_an_api_token_and_no_other_pod_of_its_account_does():
    """Finding: the step ServiceAccounts say automount false and the WorkflowTemplates never
    said otherwise, so Kubernetes mounted no token: secops had no in-cluster credentials and
    Argo's executor could not report outputs. The pod field decides, else the account's."""
    docs = docs_for(FULL)
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    pods = list(pod_specs(docs))
    for pod in pods:
        account = accounts[service_account_of(pod)]
        assert would_mount_token(pod.spec, account), pod.origin
    assert {p.origin for p in pods} >= {"WorkflowTemplate/secops-bootstrap-handover/read-bootstrap", "WorkflowTemplate/secops-status/status", "CronJob/secops-handover"}
    # The accounts themselves stay closed: a pod that borrows one gets no token unasked.
    for name, account in accounts.items():
        if name != "secops-sensor":
            assert not would_mount_token({}, account), name


def test_the_token_rule_is_kubernetes_rule():
    closed, open_, silent = ({"automountServiceAccountToken": v} for v in (False, True, None))
    assert would_mount_token({}, {}) is True, "neither says: mounted"
    assert would_mount_token({}, closed) is False
    assert would_mount_token({"automountServiceAccountToken": True}, closed) is True, "the pod field wins"
    assert would_mount_token({"automountServiceAccountToken": False}, open_) is False
    assert would_mount_token({}, silent) is True


# -- scheduling ------------------------------------------------------------------------------

@pytest.mark.parametrize("cron", [True, False])
def test_one_scheduler_per_rotation(cron):
    """Finding: with events.enabled each rotation had a CronWorkflow and a calendar Sensor on
    the same schedule, with different rotation ids: two new versions per tick."""
    docs = docs_for({**FULL, "cronWorkflows": {"enabled": cron}})
    for rotation in FULL["rotations"]:
        name = rotation["name"]
        crons = [d for d in docs if d["kind"] == "CronWorkflow" and d["metadata"]["name"] == f"secops-rotate-{name}"]
        calendars = [
            dep for d in docs if d["kind"] == "Sensor" for dep in d["spec"]["dependencies"]
            if dep["eventSourceName"] == "secops-calendar" and dep["eventName"] == f"rotate-{name}"
        ]
        assert len(crons) + len(calendars) == 1, (name, len(crons), len(calendars))


def test_the_rotation_webhook_requires_a_secret_held_token():
    """Finding: the webhook EventSource accepted any POST."""
    webhook = by_name(docs_for(FULL), "EventSource", "secops-webhook")["spec"]["webhook"]["rotate"]
    assert webhook["authSecret"] == {"name": "secops-webhook-token", "key": "token"}
    renamed = by_name(docs_for({**FULL, "events": {**FULL["events"], "webhook": {"enabled": True, "authSecret": {"name": "hook", "key": "bearer"}}}}), "EventSource", "secops-webhook")
    assert renamed["spec"]["webhook"]["rotate"]["authSecret"] == {"name": "hook", "key": "bearer"}


# -- status ----------------------------------------------------------------------------------

def test_status_has_its_own_read_only_identity_in_kubernetes_and_vault():
    """Finding: NOTES' `kubectl run ... status` ran as the default account with no Vault
    address or login: no chart identity or policy could run status."""
    values = {**FULL, "namespaces": ["payments", "billing"]}
    docs = docs_for(values)
    account = by_name(docs, "ServiceAccount", "secops-status")
    assert account["automountServiceAccountToken"] is False
    for ns in ("payments", "billing"):
        role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "secops-status" and d["metadata"]["namespace"] == ns)
        assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
    config = by_name(docs, "ConfigMap", "secops-vault-policies")["data"]
    blocks = dict(re.findall(r'path "([^"]+)" \{\s*capabilities = (\[[^\]]*\])', config["status.hcl"]))
    # Read-only: provenance metadata, the fingerprint key, and each static role's rotation
    # record (times and ids, never a credential) for the engine rows.
    engine_records = {f"secret/data/secops/engine-rotations/{r['staticRole']}": '["read"]' for r in values.get("rotations", []) if "staticRole" in r}
    assert engine_records, "the full values rotate a static role"
    assert blocks == {"secret/metadata/*": '["list", "read"]', "secret/data/secops/fingerprint-key": '["read"]', **engine_records}
    role = json.loads(config["roles.json"])["auth/kubernetes/role/secops-status"]
    assert role["bound_service_account_names"] == ["secops-status"] and role["token_policies"] == ["secops-status"]
    bootstrap = by_name(docs, "ConfigMap", "secops-vault-setup")["data"]["vault-setup.hcl"]
    assert 'path "sys/policies/acl/secops-status"' in bootstrap and 'path "auth/kubernetes/role/secops-status"' in bootstrap


def test_status_runs_on_a_schedule_and_fails_visibly():
    docs = docs_for(FULL)
    template = by_name(docs, "WorkflowTemplate", "secops-status")
    assert template["spec"]["serviceAccountName"] == "secops-status"
    step = next(t for t in template["spec"]["templates"] if "container" in t)
    assert step["container"]["args"][:1] == ["status"]
    env = {e["name"]: e.get("value") for e in step["container"]["env"]}
    assert env["SECOPS_VAULT_ROLE"] == "secops-status"
    outputs = {p["name"]: p["valueFrom"]["path"] for p in step["outputs"]["parameters"]}
    assert outputs["result"] == "/out/result.json"
    assert "== 75" in step["retryStrategy"]["expression"], "exit 3 (a violation) is not retried: the Workflow fails"
    cron = by_name(docs, "CronWorkflow", "secops-status")
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == "secops-status"


def test_notes_print_only_commands_that_name_rendered_objects():
    for values in ({}, FULL):
        rendered = m.render(values)
        notes = next(text for name, text in rendered.items() if name.endswith("NOTES.txt"))
        docs = m.documents(rendered)
        assert "kubectl run" not in notes
        for kind, name in re.findall(r"--from (\w+)/([\w-]+)", notes):
            kinds = {"workflowtemplate": "WorkflowTemplate", "cronworkflow": "CronWorkflow"}
            assert any(d["kind"] == kinds[kind] and d["metadata"]["name"] == name for d in docs), f"{kind}/{name}"
        assert "secops-status" in notes


# -- fan-out and values ----------------------------------------------------------------------

POD_SECONDS = 10  # schedule, pull, start and report one step pod: a conservative round
SECRET_SECONDS = 0.5  # one handover's Kubernetes and Vault round trips, at the slowest seen


def handover_seconds(values: dict, secrets: int) -> float:
    """The critical path of secops-bootstrap-handover over `secrets` pending Secrets, from
    the rendered template: rounds of `parallelism` pods, each doing its share of the work."""
    template = by_name(docs_for(values), "WorkflowTemplate", "secops-bootstrap-handover")["spec"]
    parallelism = template.get("parallelism") or 10**6
    shards = int(next(p["value"] for p in template["arguments"]["parameters"] if p["name"] == "shards"))
    shard_step = next(t for t in template["templates"] if t["name"] == "handover-shard")
    args = shard_step["container"]["args"]
    concurrency = int(args[args.index("--concurrency") + 1])
    if shards == 0:  # two pods per Secret (write-vault, mark-consumed), one Secret each
        return POD_SECONDS + math.ceil(secrets / parallelism) * 2 * (POD_SECONDS + SECRET_SECONDS)
    rounds = math.ceil(shards / parallelism)
    per_shard = math.ceil(secrets / shards)
    return POD_SECONDS + rounds * (POD_SECONDS + math.ceil(per_shard / concurrency) * SECRET_SECONDS)


@pytest.mark.parametrize("secrets", [300, 1000])
def test_the_default_handover_finishes_a_few_hundred_secrets_within_its_deadline(secrets):
    """Finding: the default fan-out was one pair of pods per Secret, 4 at a time: 300
    Secrets needed about 25 minutes under a 10-minute deadline."""
    deadline = by_name(docs_for({}), "WorkflowTemplate", "secops-bootstrap-handover")["spec"]["activeDeadlineSeconds"]
    assert handover_seconds({}, secrets) <= deadline, handover_seconds({}, secrets)
    assert handover_seconds({"handover": {"shards": 0}}, 300) > deadline, "the estimate can fail"


def test_empty_shards_start_no_pod():
    template = by_name(docs_for({}), "WorkflowTemplate", "secops-bootstrap-handover")["spec"]
    step = next(s for t in template["templates"] if "steps" in t for group in t["steps"] for s in group if s["name"] == "hand-over-shard")
    assert "{{item.items}} != 0" in step["when"]


def test_values_the_templates_cannot_honour_are_refused():
    """Findings: push.concurrency was never used (push-secret has no --concurrency), and
    allNamespaces widened RBAC but not the workflows or the Vault policies."""
    import helm_python as helm

    with helm.Chart.load(str(m.CHART)) as chart:
        for unused in ({"push": {"concurrency": 8}}, {"allNamespaces": True}):
            with pytest.raises(Exception):
                chart.validate_schema(unused)


def test_vault_namespace_reaches_every_secops_container():
    def envs(values):
        for pod in pod_specs(docs_for(values)):
            for container in pod.spec["containers"]:
                yield pod.origin, {e["name"]: e.get("value") for e in container["env"]}
    for origin, env in envs({**FULL, "vault": {"namespace": "team-a"}}):
        assert env.get("VAULT_NAMESPACE") == "team-a", origin
    assert all("VAULT_NAMESPACE" not in env for _, env in envs(FULL))


def test_cluster_name_reaches_every_secops_container():
    """Issue #19: every step of a named cluster records and judges that cluster's origins;
    the default (unnamed) renders as before."""
    import helm_python as helm

    def envs(values):
        for pod in pod_specs(docs_for(values)):
            for container in pod.spec["containers"]:
                yield pod.origin, {e["name"]: e.get("value") for e in container["env"]}
    named = list(envs({**FULL, "clusterName": "east"}))
    assert named
    for origin, env in named:
        assert env.get("SECOPS_CLUSTER") == "east", origin
    assert all("SECOPS_CLUSTER" not in env for _, env in envs(FULL))
    with helm.Chart.load(str(m.CHART)) as chart:
        for bad in ("east/west", "East", "a.b", "x" * 64):
            with pytest.raises(Exception):
                chart.validate_schema({"clusterName": bad})


def test_clusters_sharing_a_vault_get_policies_of_their_own():
    """Issue #19: Vault policies are global; two clusters rendering `secops-handover` for
    their own namespaces would overwrite each other's at every vault-setup run."""
    def vault_side(values):
        docs = docs_for(values)
        policies = by_name(docs, "ConfigMap", "secops-vault-policies")["data"]
        names = {f"secops-{key[:-len('.hcl')]}" for key in policies if key.endswith(".hcl")}
        used = {p for role in json.loads(policies["roles.json"]).values() for p in role["token_policies"]}
        granted = set(re.findall(r'path "sys/policies/acl/([^"]+)"', by_name(docs, "ConfigMap", "secops-vault-setup")["data"]["vault-setup.hcl"]))
        return names, used, granted
    east, west, unnamed = (vault_side({**FULL, **extra}) for extra in ({"clusterName": "east"}, {"clusterName": "west"}, {}))
    for names, used, granted in (east, west, unnamed):
        assert names == used == granted, (names, used, granted)
    assert east[0].isdisjoint(west[0]) and east[0].isdisjoint(unnamed[0])
    assert unnamed[0] == {"secops-handover", "secops-push", "secops-rotate", "secops-status"}
    assert "secops-east-handover" in east[0]


def test_the_pod_model_refuses_what_it_does_not_model():
    template = by_name(docs_for({}), "WorkflowTemplate", "secops-status")["spec"]
    step = next(t for t in template["templates"] if "container" in t)
    for patch in ({"podSpecPatch": "{}"}, {"sidecars": []}):
        with pytest.raises(ValueError, match="not modelled"):
            workflow_pod(template, {**step, **patch}, "x")
    with pytest.raises(ValueError, match="envFrom"):
        workflow_pod(template, {**step, "container": {**step["container"], "envFrom": []}}, "x")
