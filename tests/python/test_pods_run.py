"""The chart end to end, with only its own identities: rendered, applied to the emulator, the
Vault side applied by `secops vault-setup` with the bootstrap policy's token, then each
WorkflowTemplate run as the pods Kubernetes would make (argo.py with pods.PodMaker): the
step's service account, a token only where Kubernetes would mount one, env and volumes
resolved from the cluster. No harness kubeconfig, no root Vault token."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import tempfile
import time
import uuid
import warnings
from datetime import datetime
from pathlib import Path

import pytest

import secops_manifests as m
from argo import Runner, StepFailed
from conftest import bin_dir, eso_controller
from faultproxy import Calls, FaultProxy
from pods import ApiServer, PodMaker, Podman
from test_least_privilege import mint_token, vault_api

RELEASE_NS = "secops-pods"  # its own release, apart from the other tests' "secops"
APPS = ["pods-a", "pods-b"]
AUTH_MOUNT = "k8s-pods"
WEBHOOK_TOKEN = "webhook-" + uuid.uuid4().hex
ES_PATH = "/apis/external-secrets.io/v1/namespaces/pods-a/externalsecrets/db"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/pods-a/deployments/api"


def chart_values(vault_addr: str, cluster_url: str, **extra) -> dict:
    return {
        "namespaces": APPS,
        "vault": {"address": vault_addr, "authMount": AUTH_MOUNT},
        # Its consumers: ESO's ExternalSecret (force-synced, then waited for) and a workload
        # restarted after the sync, with the chart's rotate identity alone.
        "rotations": [{"name": "pods-db", "schedule": "0 3 * * 0", "path": "pods-a/db", "keys": ["value"], "generator": "hex", "keepVersions": 2,
                       "refresh": ["externalsecret/pods-a/db"], "restart": ["deployment/pods-a/api"]}],
        "events": {"enabled": True, "webhook": {"enabled": True}},
        "vaultSetup": {"enableMissing": True, "kubernetesHost": cluster_url},
        **extra,
    }


def render(values: dict) -> list[dict]:
    import helm_python as helm

    with helm.Chart.load(str(m.CHART)) as chart:
        return m.documents(chart.render(values, name="secops", namespace=RELEASE_NS))


class ChartStage:
    def __init__(self, services, work: Path, engine):
        self.cluster, self.vault, self.api = services["cluster"], services["vault"], services["api"]
        self.engine, self.engine_reason = engine
        self.values = chart_values(self.vault.addr, self.cluster.url)
        self.docs = render(self.values)
        for ns in [RELEASE_NS, *APPS]:
            self.cluster.namespace(ns)
        for doc in self.docs:
            if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap"):
                doc = copy.deepcopy(doc)
                doc["metadata"].setdefault("namespace", RELEASE_NS)
                self.apply(doc)
        # The operator's part (docs/runbook.md): Vault may review the tokens it is shown
        # (kubernetes auth with the client's JWT), and the webhook's token Secret.
        self.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "pods-auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": d["metadata"]["name"], "namespace": RELEASE_NS} for d in self.docs if d["kind"] == "ServiceAccount"],
        })
        self.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secops-webhook-token", "namespace": RELEASE_NS},
                    "data": {"token": base64.b64encode(WEBHOOK_TOKEN.encode()).decode()}})
        # The application's side: what consumes pods-a/db (ESO itself is the stand-in that
        # runs while a rotation does, conftest.eso_controller).
        self.cluster.create({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db", "namespace": "pods-a"},
                             "spec": {"refreshInterval": "1h"}})
        self.cluster.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "pods-a"},
                             "spec": {"template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}})
        ca = work / "ca.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=pods",
                        "-keyout", str(work / "ca.key"), "-out", str(ca)], check=True, capture_output=True)
        assert vault_api(self.vault.addr, "POST", "sys/policies/acl/secops-vault-setup", {"policy": self.configmap("secops-vault-setup")["vault-setup.hcl"]}) == 204
        setup = subprocess.run(
            # The operator's first run, from a workstation (README): the ConfigMap as applied.
            [str(bin_dir() / "secops"), "vault-setup", "--from-configmap", f"{RELEASE_NS}/secops-vault-policies", "--enable-missing",
             "--kubernetes-host", self.cluster.url, "--kubernetes-ca-file", str(ca), "--kubernetes-use-client-jwt"],
            env={"PATH": "/usr/bin:/bin", "VAULT_ADDR": self.vault.addr, "VAULT_TOKEN": mint_token("secops-vault-setup", self.vault.addr),
                 "KUBECONFIG": services["env"]["KUBECONFIG"], "SECOPS_MAX_ATTEMPTS": "1"},
            capture_output=True, text=True, timeout=60)
        assert setup.returncode == 0, setup.stdout + setup.stderr[-2000:]
        templates = {d["metadata"]["name"]: d for d in self.docs if d["kind"] == "WorkflowTemplate"}
        self.runner = Runner(str(bin_dir() / "secops"), {}, templates, pods=PodMaker(self.cluster, RELEASE_NS, self.api), engine=self.engine)

    def configmap(self, name):
        return next(d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)["data"]

    def apply(self, doc):
        api = doc["apiVersion"]
        prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        plural = doc["kind"].lower() + "s"
        ns = doc["metadata"].get("namespace")
        base = f"{prefix}/namespaces/{ns}/{plural}" if ns else f"{prefix}/{plural}"
        code, _ = self.cluster.request("GET", f"{base}/{doc['metadata']['name']}")
        method, path = ("PUT", f"{base}/{doc['metadata']['name']}") if code == 200 else ("POST", base)
        code, body = self.cluster.request(method, path, doc)
        assert code in (200, 201), body

    def by_name(self, kind, name, docs=None):
        return next(d for d in (docs or self.docs) if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.fixture(scope="module")
def engine():
    """Podman with the project's image when it can run here, else the binary (said so)."""
    podman, reason = Podman.from_environment()
    if podman is None:
        warnings.warn(f"chart end-to-end steps run as the binary, not as containers: {reason}", pytest.PytestWarning)
    yield podman, reason
    if podman:
        podman.close()


@pytest.fixture(scope="module")
def stage(services, engine):
    return ChartStage(services, Path(tempfile.mkdtemp(prefix="secops-pods-")), engine)


def test_steps_run_as_containers_of_the_project_image_configured_in_cluster(stage):
    """Container mode: the image, the pod's mounts and env, kube's in-cluster configuration
    (KUBERNETES_SERVICE_HOST/PORT, token and ca.crt under the service-account path) over HTTPS
    with the emulator's CA. Skipped, saying why, where the steps run as the binary."""
    if stage.engine is None:
        pytest.skip(f"steps ran as the binary with the same files and env: {stage.engine_reason}")
    stage.runner.submit("secops-status")
    run = stage.runner.runs[-1]
    assert run["mode"] == "container" and run["code"] == 0, run["stderr"][-1000:]
    assert "KUBECONFIG" not in run["env"] and run["env"]["KUBERNETES_SERVICE_PORT"] == str(stage.api.port)
    assert json.loads(run["outputs"]["result"])["command"] == "status"


def consumed(cluster, ns, name) -> bool:
    secret = cluster.secret(ns, name)
    return bool(secret) and secret["metadata"].get("labels", {}).get("secops.dev/state") == "consumed"


BOOTSTRAP_PER_NAMESPACE = 25  # 50 bootstrap Secrets across the two namespaces


def single_origin(meta: dict, secret: dict) -> bool:
    """Provenance naming this Secret, and it alone: its origin, uid and first version."""
    ns, name = secret["metadata"]["namespace"], secret["metadata"]["name"]
    return (re.fullmatch(rf"bootstrap:([a-z0-9-]+/)?{ns}/{name}", meta.get("secops-origin", "")) is not None
            and meta.get("secops-origin-uid") == secret["metadata"]["uid"] and meta.get("secops-origin-version") == "1")


def consumers(cluster) -> tuple[dict, dict]:
    code_es, es = cluster.request("GET", ES_PATH)
    code_deploy, deploy = cluster.request("GET", DEPLOYMENT_PATH)
    assert code_es == code_deploy == 200, (es, deploy)
    return es, deploy


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_refreshed_after_sync(cluster, stamped_before: str | None) -> None:
    """contract §6.4: the ExternalSecret force-synced with the rotation's trigger
    (`INSTANT/ID`: the record's instant and the rotation id) and synced by ESO (`refreshTime`
    at or after the instant, `Ready=True`), then the Deployment restarted with the same trigger."""
    es, deploy = consumers(cluster)
    stamp = es["metadata"]["annotations"]["force-sync"]
    assert stamp != stamped_before, "a new rotation, a new force-sync trigger"
    at, rotation_id = stamp.split("/", 1)
    assert es["metadata"]["annotations"]["secops.dev/rotation-id"] == rotation_id, es["metadata"]
    assert es["status"]["syncedResourceVersion"] == stamp, es["status"]  # ESO acted on this trigger
    assert instant(es["status"]["refreshTime"]) >= instant(at), (es["status"], stamp)
    assert {"type": "Ready", "status": "True"}.items() <= es["status"]["conditions"][0].items(), es["status"]
    restarted = deploy["spec"]["template"]["metadata"]["annotations"]["secops.dev/restartedAt"]
    assert restarted == stamp, (restarted, stamp)
    assert int(deploy["metadata"]["resourceVersion"]) > int(es["metadata"]["resourceVersion"]), "restarted after ESO's sync"


def deliver(stage, headers: dict, body: dict) -> list[dict]:
    """What one POST to the webhook EventSource's /rotate starts: nothing when Argo Events'
    webhook server turns it away (authSecret), else the Workflows the Sensor submits for the
    event the server publishes (data: the request's header and body, as Argo Events sends)."""
    source = stage.by_name("EventSource", "secops-webhook")
    if not Runner.webhook_accepts(source, "rotate", headers, stage.cluster, RELEASE_NS):
        return []
    sensor = stage.by_name("Sensor", "secops-rotate-webhook")
    event = {"context": {"id": uuid.uuid4().hex, "source": "secops-webhook", "subject": "rotate", "type": "webhook"},
             "data": {"header": {k: [v] for k, v in headers.items()}, "body": body}}
    workflows = []
    for dep in sensor["spec"]["dependencies"]:
        if (dep["eventSourceName"], dep["eventName"]) == ("secops-webhook", "rotate"):
            workflows.extend(Runner.fire(sensor, dep["name"], event))
    return workflows


def test_handover_rotations_push_and_status_run_with_only_the_chart_identities(stage):
    """#17's acceptance run, each step a pod of the chart's identities (no Vault token in any
    step): 50 bootstrap Secrets in two namespaces through the sharded handover; the scheduled
    rotation with its ExternalSecret and Deployment (ESO's stand-in syncing); the webhook
    rotation with the token (and its redelivery), without it and with a wrong one; a push; the
    status CronWorkflow."""
    cluster, vault, runner = stage.cluster, stage.vault, stage.runner
    first_run = len(runner.runs)
    names = [(ns, f"s{i}") for ns in APPS for i in range(BOOTSTRAP_PER_NAMESPACE)]
    values = {}
    for ns, name in names:
        values[ns, name] = f"value-{ns}-{name}-" + uuid.uuid4().hex
        cluster.bootstrap(ns, name, f"{ns}/{name}", values[ns, name])
    cluster.bootstrap("pods-a", "db", "pods-a/db", "db-initial")
    cluster.bootstrap("pods-b", "cert", "pods-b/cert", "operator-made", cls="internal")

    runner.submit("secops-bootstrap-handover")  # the defaults: both namespaces, 4 shards
    plan = next(r for r in runner.runs[first_run:] if r["args"][0] == "read-bootstrap")
    shards = [r for r in runner.runs[first_run:] if r["args"][0] == "handover"]
    planned = json.loads(plan["outputs"]["items"])
    assert sum(s["items"] for s in planned) == len(names) + 1  # and db
    # A pod per non-empty shard (a uid's hash: with 51 Secrets, all four, but for ~1e-6).
    assert len(shards) == len({r["args"][r["args"].index("--shard") + 1] for r in shards}) == len([s for s in planned if s["items"]]) >= 2, planned
    for ns, name in names:
        meta = vault.get(f"secret/metadata/{ns}/{name}")
        assert consumed(cluster, ns, name) and meta["current_version"] == 1, f"{ns}/{name}"
        assert vault.get(f"secret/data/{ns}/{name}")["data"]["value"] == values[ns, name], f"{ns}/{name}"
        assert single_origin(meta["custom_metadata"], cluster.secret(ns, name)), (f"{ns}/{name}", meta["custom_metadata"])
    assert consumed(cluster, "pods-a", "db") and vault.current_version("secret", "pods-a/db") == 1

    # The scheduled rotation: the CronWorkflow's Workflow, its consumers told by the step.
    cron = stage.by_name("CronWorkflow", "secops-rotate-pods-db")["spec"]["workflowSpec"]
    arguments = {p["name"]: p["value"] for p in cron["arguments"]["parameters"]}
    assert (arguments["refresh"], arguments["restart"]) == ("externalsecret/pods-a/db", "deployment/pods-a/api")
    stamp_before = (consumers(cluster)[0]["metadata"].get("annotations") or {}).get("force-sync")
    with eso_controller(cluster, ["pods-a"]):
        outputs = runner.submit(cron["workflowTemplateRef"]["name"], arguments) or runner.runs[-1]["outputs"]
    assert (outputs["outcome"], outputs["version"]) == ("rotated", "2"), outputs
    assert vault.current_version("secret", "pods-a/db") == 2
    assert_refreshed_after_sync(cluster, stamp_before)

    # The webhook rotation: only a request with the token submits a Workflow.
    rotation_id = "hook-" + uuid.uuid4().hex[:12]
    body = {"rotation": "pods-db", "rotationId": rotation_id}
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": WEBHOOK_TOKEN}):
        assert deliver(stage, headers, body) == [], headers
    token = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    assert deliver(stage, token, {**body, "rotation": "elsewhere"}) == []  # the Sensor's filter
    assert vault.current_version("secret", "pods-a/db") == 2
    workflows = deliver(stage, token, body)
    assert len(workflows) == 1 and workflows[0]["spec"]["arguments"]["parameters"][0] == {"name": "rotation-id", "value": rotation_id}, workflows
    stamp_before = consumers(cluster)[0]["metadata"]["annotations"]["force-sync"]
    with eso_controller(cluster, ["pods-a"]):
        outputs = runner.run_workflow(workflows[0]) or runner.runs[-1]["outputs"]
        assert (outputs["outcome"], vault.current_version("secret", "pods-a/db")) == ("rotated", 3), outputs
        assert_refreshed_after_sync(cluster, stamp_before)
        # Argo Events delivers at least once: the same request again rotates and rolls nothing.
        es, deploy = consumers(cluster)
        time.sleep(1.1)  # a redelivery stamping "now" instead of the record's instant would show
        for workflow in deliver(stage, token, body):
            runner.run_workflow(workflow)
    assert runner.runs[-1]["outputs"]["outcome"] == "already-rotated"
    assert vault.current_version("secret", "pods-a/db") == 3
    after = consumers(cluster)
    assert [o["metadata"]["resourceVersion"] for o in after] == [es["metadata"]["resourceVersion"], deploy["metadata"]["resourceVersion"]]

    runner.submit("secops-push-secret")
    assert vault.current_version("secret", "pods-b/cert") == 1

    status_cron = stage.by_name("CronWorkflow", "secops-status")["spec"]["workflowSpec"]
    runner.submit(status_cron["workflowTemplateRef"]["name"])
    report = json.loads(runner.runs[-1]["outputs"]["result"])
    assert report["command"] == "status" and runner.runs[-1]["code"] == 0, report

    runs = runner.runs[first_run:]
    assert {r["mode"] for r in runs} == {"container" if stage.engine else "binary"}
    for run in runs:
        assert "VAULT_TOKEN" not in run["env"] and run["env"]["SECOPS_VAULT_AUTH"] == "kubernetes", run["args"]
        assert "could not post the Kubernetes Event" not in run["stderr"], run["args"]


def test_status_fails_visibly_on_a_violation_with_the_report_as_output(stage):
    cluster, runner = stage.cluster, stage.runner
    cluster.bootstrap("pods-a", "drift", "pods-a/drift", "first")
    runner.submit("secops-bootstrap-handover", {"namespaces": "pods-a"})
    assert consumed(cluster, "pods-a", "drift")
    code, _ = cluster.request("PATCH", "/api/v1/namespaces/pods-a/secrets/drift", {"data": {"value": base64.b64encode(b"changed in git").decode()}}, "application/merge-patch+json")
    assert code == 200
    with pytest.raises(StepFailed, match="exited 3"):
        runner.submit("secops-status")
    report = json.loads(runner.runs[-1]["outputs"]["result"])
    assert any(v["kind"] == "drifted" for row in report["rows"] for v in row.get("violations", [])), report
    cluster.request("DELETE", "/api/v1/namespaces/pods-a/secrets/drift")


@pytest.mark.parametrize("template", ["secops-bootstrap-handover", "secops-status"])
def test_a_step_pod_without_a_token_fails_as_in_a_cluster(stage, template):
    """The chart before its fix: the closed ServiceAccounts decide, no token is mounted, and
    secops finds no in-cluster credentials (the harness hands none in)."""
    original = stage.runner.templates[template]
    closed = copy.deepcopy(original)
    closed["spec"].pop("automountServiceAccountToken")
    stage.runner.templates[template] = closed
    try:
        with pytest.raises(StepFailed, match="exited 2"):
            stage.runner.submit(template)
        assert "KUBECONFIG" not in stage.runner.runs[-1]["env"]
    finally:
        stage.runner.templates[template] = original


def tick(stage, docs, rotation: str):
    """Everything one schedule tick of `rotation` starts: its CronWorkflows and its calendar
    Sensor triggers, each as the Workflow it submits."""
    workflows = []
    for doc in docs:
        if doc["kind"] == "CronWorkflow" and doc["metadata"]["name"] == f"secops-rotate-{rotation}":
            workflows.append({"spec": copy.deepcopy(doc["spec"]["workflowSpec"])})
        if doc["kind"] == "Sensor":
            for dep in doc["spec"]["dependencies"]:
                if dep["eventSourceName"] == "secops-calendar" and dep["eventName"] == f"rotate-{rotation}":
                    workflows.extend(Runner.fire(doc, dep["name"], {"context": {"id": str(uuid.uuid4())}, "data": {}}))
    return workflows


@pytest.mark.parametrize("cron", [True, False])
def test_one_schedule_tick_writes_one_new_version(stage, cron):
    docs = render({**stage.values, "cronWorkflows": {"enabled": cron}})
    if not stage.cluster.secret("pods-a", "db"):
        stage.cluster.bootstrap("pods-a", "db", "pods-a/db", "db-initial")
        stage.runner.submit("secops-bootstrap-handover", {"namespaces": "pods-a"})
    before = stage.vault.current_version("secret", "pods-a/db")
    with eso_controller(stage.cluster, ["pods-a"]):  # the rotation waits for its ExternalSecret's sync
        for workflow in tick(stage, docs, "pods-db"):
            stage.runner.run_workflow(workflow)
    assert stage.vault.current_version("secret", "pods-a/db") == before + 1


def _writes(calls, remote: str, path: str, methods) -> int:
    return sum(1 for c in calls if c.remote == remote and c.path == path and c.method in methods and 200 <= c.code < 300)


def test_a_step_killed_at_each_remote_call_converges_when_the_workflow_is_rerun(stage):
    """#17: the handover step killed at its k-th remote call, k = 1, 2, ... until the step
    finishes first (Vault or the API server: the call carried out, the step killed before it
    hears the answer), then the workflow re-run: converged, nothing lost or duplicated. Each
    Secret's value in Vault as one version written once (`cas=0`), the Secret marked consumed by
    one write, the provenance naming that Secret alone; later runs leave earlier ones alone.
    Container runs: 4 per kill point (the killed workflow's two steps, the re-run's two)."""
    calls = Calls()
    vault_port = int(stage.vault.addr.rsplit(":", 1)[1])
    kube_port = int(stage.cluster.url.rsplit(":", 1)[1])
    vault_proxy = FaultProxy("vault", vault_port, calls)
    kube_proxy = FaultProxy("kube", kube_port, calls, tls_dir=stage.api.ca.parent)
    try:
        values = {**stage.values, "vault": {**stage.values["vault"], "address": f"http://127.0.0.1:{vault_proxy.port}"}}
        templates = {d["metadata"]["name"]: d for d in render(values) if d["kind"] == "WorkflowTemplate"}
        api = ApiServer("127.0.0.1", kube_proxy.port, stage.api.ca)
        runner = Runner(str(bin_dir() / "secops"), {}, templates, pods=PodMaker(stage.cluster, RELEASE_NS, api), engine=stage.engine)
        runner.interrupt = calls.fired
        runner.on_step = lambda template: calls.arm(template == "handover-shard")
        arguments = {"namespaces": "pods-b", "shards": "1"}  # one step to kill: the one shard

        def handed_over_once(name: str, value: str, log) -> None:
            secret = stage.cluster.secret("pods-b", name)
            assert consumed(stage.cluster, "pods-b", name), name
            assert stage.vault.current_version("secret", f"pods-b/{name}") == 1, name
            assert stage.vault.get(f"secret/data/pods-b/{name}")["data"]["value"] == value, name
            meta = stage.vault.get(f"secret/metadata/pods-b/{name}")["custom_metadata"]
            assert meta["secops-origin-uid"] == secret["metadata"]["uid"] and meta["secops-origin-version"] == "1", meta
            assert f"pods-b/{name}" in meta["secops-origin"], meta
            assert _writes(log, "vault", f"/v1/secret/data/pods-b/{name}", ("POST", "PUT")) == 1, name
            assert _writes(log, "kube", f"/api/v1/namespaces/pods-b/secrets/{name}", ("PATCH", "PUT")) == 1, name

        killed_at = []
        for k in range(1, 41):
            name, value = f"killed-{k}", "value-" + uuid.uuid4().hex
            stage.cluster.bootstrap("pods-b", name, f"pods-b/{name}", value)
            start = len(calls.log)
            calls.reset(kill_at=k)
            try:
                runner.submit("secops-bootstrap-handover", arguments)
            except StepFailed as failed:
                assert calls.fired.is_set() and "exited 137" in str(failed), failed
                killed_at.append(calls.log[-1])
                calls.released.set()
                calls.reset()
                runner.submit("secops-bootstrap-handover", arguments)
                handed_over_once(name, value, calls.log[start:])
                continue
            # The step made fewer than k calls: each of them has been a kill point.
            handed_over_once(name, value, calls.log[start:])
            break
        else:
            raise AssertionError(f"the handover step made more than 40 calls: {calls.log[-40:]}")
        for i in range(1, k + 1):
            assert stage.vault.current_version("secret", f"pods-b/killed-{i}") == 1, i
        # Both remotes, reads and writes, were kill points.
        assert len(killed_at) >= 8 and {c.remote for c in killed_at} == {"vault", "kube"}, killed_at
        assert {c.method for c in killed_at} >= {"GET", "POST", "PATCH"}, killed_at
    finally:
        calls.released.set()
        vault_proxy.close()
        kube_proxy.close()
