"""The chart and workflows/: Helm lint and schema, strict validation of every rendered object
(Kubernetes kinds with kubernetes-validate, Argo kinds against the Argo schemas), the checks
no schema expresses, and one source of truth."""

from __future__ import annotations

import copy
import re

import helm_python as helm
import pytest
import yaml

import secops_manifests as m

FULL = yaml.safe_load((m.CHART / "ci" / "full-values.yaml").read_text())
VALUE_SETS = {"default": {}, "full": FULL, "workflows": m.workflow_values(), "events-without-cron": {**FULL, "cronWorkflows": {"enabled": False}}}
# The Argo schemas live outside the repository; where none can be found (offline, no shared
# copy) the checks that need them skip, saying why and what fixes it.
needs_schemas = pytest.mark.skipif(m.schemas_missing() is not None, reason=m.schemas_missing() or "")


def docs_for(values):
    return m.documents(m.render(values))


def test_helm_lint_finds_no_errors():
    result = helm.lint(str(m.CHART))
    assert result["errors"] == [], result
    assert not [x for x in result["messages"] if x["severity"] > 1], result


def test_values_schema_accepts_the_shipped_values_and_rejects_typos():
    with helm.Chart.load(str(m.CHART)) as chart:
        for values in VALUE_SETS.values():
            chart.validate_schema(values)
        for typo in ({"namespace": ["a"]}, {"handover": {"mode": "erase"}}, {"image": {"repository": "x", "tag": "latest"}}, {"rotations": [{"name": "x", "schedule": "* * * * *", "path": "a/b", "keys": ["k"], "keepVersions": 1}]}):
            with pytest.raises(Exception):
                chart.validate_schema(typo)


@needs_schemas
@pytest.mark.parametrize("values", VALUE_SETS.keys())
def test_every_rendered_object_validates_strictly(values):
    docs = docs_for(VALUE_SETS[values])
    assert docs
    problems = {f"{d['kind']}/{d['metadata']['name']}": m.validate(d) for d in docs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_workflows_dir_is_the_chart_rendered():
    expected = m.workflow_files(m.workflow_values())
    on_disk = {p.name: p.read_text() for p in m.WORKFLOWS.glob("*-*.yaml")}
    assert on_disk == expected, "workflows/ is stale: run scripts/render-workflows"


def first(docs, kind):
    return copy.deepcopy(next(d for d in docs if d["kind"] == kind))


@pytest.mark.parametrize("kind", [*(pytest.param(k, marks=needs_schemas) for k in ("WorkflowTemplate", "CronWorkflow", "EventSource", "Sensor")), "CronJob", "Role"])
def test_each_check_can_fail(kind):
    doc = first(docs_for(FULL), kind)
    assert m.validate(doc) == []
    unknown = copy.deepcopy(doc)
    unknown["spec" if "spec" in doc else "metadata"]["surprise"] = True
    assert m.validate(unknown), "an unknown field"
    wrong_type = copy.deepcopy(doc)
    wrong_type["metadata"]["labels"] = ["not", "a", "map"]
    assert m.validate(wrong_type), "a wrong type"
    missing = copy.deepcopy(doc)
    if kind == "Role":
        missing["rules"][0].pop("verbs")
    elif kind == "CronJob":
        missing["spec"].pop("jobTemplate")
    elif kind == "Sensor":
        missing["spec"]["dependencies"][0].pop("eventSourceName")
    elif kind == "EventSource":
        missing["spec"] = {"webhook": {"x": {"endpoint": "/x", "method": "POST", "url": ""}}}
    elif kind == "CronWorkflow":
        missing["spec"].pop("schedules")
        missing["spec"].pop("workflowSpec")
    else:
        missing["spec"]["templates"][0].pop("name")
    assert m.validate(missing), "a missing required field"


@needs_schemas
def test_project_checks_catch_what_schemas_cannot():
    template = copy.deepcopy(by_name(docs_for({}), "WorkflowTemplate", "secops-bootstrap-handover"))
    assert m.validate(template) == []
    unresolved = copy.deepcopy(template)
    unresolved["spec"]["templates"][0]["steps"][0][0]["template"] = "no-such-template"
    assert any("unknown template" in p for p in m.validate(unresolved))
    duplicate = copy.deepcopy(template)
    duplicate["spec"]["templates"].append(copy.deepcopy(duplicate["spec"]["templates"][0]))
    assert any("duplicate" in p for p in m.validate(duplicate))
    entry = copy.deepcopy(template)
    entry["spec"]["entrypoint"] = "nowhere"
    assert any("entrypoint" in p for p in m.validate(entry))
    three = copy.deepcopy(template)
    retrying = next(t for t in three["spec"]["templates"] if "retryStrategy" in t)
    retrying["retryStrategy"]["limit"] = "three"
    assert m.validate(three), "retryStrategy.limit must be a number or an expression"
    retrying["retryStrategy"]["limit"] = "{{workflow.parameters.retries}}"
    assert m.validate(three) == []


def containers(doc):
    if "spec" not in doc:
        return []
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    spec = doc["spec"]
    return [t["container"] for t in spec.get("templates", []) if "container" in t]


def test_every_step_runs_restricted_and_bounded():
    for doc in docs_for(FULL):
        for container in containers(doc):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"], doc["metadata"]["name"]
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert container["resources"]["limits"] and container["resources"]["requests"]
        if doc["kind"] == "WorkflowTemplate":
            spec = doc["spec"]
            assert spec["activeDeadlineSeconds"] > 0 and spec["securityContext"]["runAsNonRoot"]
            for template in spec["templates"]:
                if "container" in template:
                    assert template["retryStrategy"]["expression"] == "asInt(lastRetry.exitCode) == 75"


def test_no_secret_value_can_travel_through_events_or_parameters():
    for doc in docs_for(FULL):
        if doc["kind"] == "EventSource":
            assert "resource" not in doc["spec"], "a resource EventSource would put Secret data on the event bus"
        text = yaml.safe_dump(doc)
        assert "secretKeyRef" not in text and "artifacts" not in text


def test_rbac_is_least_privilege():
    for values in (FULL, {}):
        docs = docs_for(values)
        for doc in docs:
            if doc["kind"] in ("Role", "ClusterRole"):
                for rule in doc["rules"]:
                    assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], doc
        assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")], "no cluster-wide access by default"
    consumer_roles = [d for d in docs_for(FULL) if d["kind"] == "Role" and d["metadata"]["name"] == "secops-rotate-consumers"]
    assert consumer_roles and all(rule["resourceNames"] and rule["verbs"] == ["get", "patch"] for r in consumer_roles for rule in r["rules"])
    assert not [d for d in docs_for({}) if d["metadata"]["name"] == "secops-rotate-consumers"], "no consumer access without targets"
    delete_mode = docs_for({"handover": {"mode": "delete"}})
    handover_role = next(d for d in delete_mode if d["kind"] == "Role" and d["metadata"]["name"] == "secops-handover")
    assert "delete" in handover_role["rules"][0]["verbs"]
    assert "delete" not in next(d for d in docs_for({}) if d["kind"] == "Role" and d["metadata"]["name"] == "secops-handover")["rules"][0]["verbs"]


def by_name(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_vault_setup_runs_with_its_own_identity_reading_one_configmap():
    docs = docs_for({"vaultSetup": {"hook": True}})
    role = by_name(docs, "Role", "secops-vault-setup")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["secops-vault-policies"], "verbs": ["get"]}]
    job = by_name(docs, "Job", "secops-vault-setup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "secops-vault-setup"
    container = pod["containers"][0]
    assert container["args"] == ["vault-setup", "--from-configmap", "secops/secops-vault-policies"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SECOPS_VAULT_ROLE"] == "secops-vault-setup" and env["SECOPS_VAULT_AUTH"] == "kubernetes"
    template = by_name(docs, "WorkflowTemplate", "secops-vault-setup")
    assert template["spec"]["serviceAccountName"] == "secops-vault-setup"
    assert not [d for d in docs_for({}) if d["kind"] == "Job"], "the hook is opt-in"


def test_the_bootstrap_policy_names_exactly_what_vault_setup_writes():
    def paths(values):
        hcl = by_name(docs_for(values), "ConfigMap", "secops-vault-setup")["data"]["vault-setup.hcl"]
        return re.findall(r'path "([^"]+)"', hcl)
    base = paths({})
    assert sorted(p for p in base if p.startswith("sys/policies/acl/")) == [f"sys/policies/acl/secops-{r}" for r in ("handover", "push", "rotate", "status")]
    assert not [p for p in base if "*" in p.replace("secops/vault-setup/roles/*", "")], "no globs"
    assert not [p for p in base if "vault-setup" in p and p.startswith(("sys/policies", "auth/"))], "never its own policy or role"
    assert not [p for p in base if p.startswith(("sys/mounts", "sys/auth"))] and "auth/kubernetes/config" not in base
    widened = paths({"vaultSetup": {"enableMissing": True, "kubernetesHost": "https://kubernetes.default.svc"}})
    assert set(widened) - set(base) == {"sys/mounts/secret", "sys/auth/kubernetes", "auth/kubernetes/config"}
    # The policies vault-setup applies are the keys of the ConfigMap it reads.
    applied = by_name(docs_for({}), "ConfigMap", "secops-vault-policies")["data"]
    assert {f"sys/policies/acl/secops-{k[:-4]}" for k in applied if k.endswith(".hcl")} == {p for p in base if p.startswith("sys/policies/acl/")}


def test_the_rotate_policy_allows_exactly_rotate_role_and_its_proof_on_the_named_static_roles():
    policies = next(d for d in docs_for(FULL) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "secops-vault-policies")
    blocks = {b.split('"')[1]: b for b in re.findall(r'path "[^"]+" \{[^}]*\}', policies["data"]["rotate.hcl"])}
    assert '["update"]' in blocks["database/rotate-role/payments-app"]
    assert '["read"]' in blocks["database/static-roles/payments-app"], "last_vault_rotation, the proof"
    assert "secret/data/secops/engine-rotations/database/payments-app" in blocks
    assert "secret/data/secops/rotation-ids/*" in blocks
    assert not [p for p in blocks if "static-creds" in p or p.startswith("database/") and p.endswith("*")], "never the password, never other roles"
    assert not [p for p in blocks if "payments-pg" in p or p == "secret/data/None"], blocks.keys()
