"""Least privilege proved, not claimed: the chart's RBAC loaded into the emulator (which
enforces it) and its Vault policies and roles applied to OpenBao by `secops vault-setup`
(with a token of the chart's bootstrap policy alone), used through kubernetes auth. Each
command succeeds with its own service account, fails with another's where it needs more,
and fails when any single rule or policy path is removed."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
import yaml

import secops_manifests as m
from conftest import bin_dir

NS = "lp-app"
ROLES = ("handover", "push", "rotate", "status")
RELEASE_NS = "secops"
AUTH_MOUNT = "k8s-lp"
VALUES = {
    "namespaces": [NS],
    "vault": {"address": "http://unused", "kvMount": "secret", "authMount": AUTH_MOUNT, "roles": {"handover": "secops-handover", "rotate": "secops-rotate", "push": "secops-push", "status": "secops-status"}},
    "rotations": [{"name": "db", "schedule": "0 3 * * 0", "path": f"{NS}/db", "keys": ["value"], "keepVersions": 2, "refresh": [f"externalsecret/{NS}/db"], "restart": [f"deployment/{NS}/api"]}],
}


def vault_api(addr, method, path, body=None):
    request = urllib.request.Request(f"{addr}/v1/{path}", data=None if body is None else json.dumps(body).encode(), method=method, headers={"X-Vault-Token": "root"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def mint_token(policy: str, addr: str) -> str:
    """A short-lived token of one policy alone, as the README tells an operator to mint."""
    request = urllib.request.Request(f"{addr}/v1/auth/token/create", data=json.dumps({"policies": [policy], "no_default_policy": True, "ttl": "10m"}).encode(),
                                     method="POST", headers={"X-Vault-Token": "root"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["auth"]["client_token"]


def policy_blocks(hcl: str) -> list[str]:
    return re.findall(r'path "[^"]+" \{.*?\n\s*\}', hcl, re.S)


class Stage:
    """The rendered chart loaded into the emulator and OpenBao."""

    def __init__(self, services, work: Path):
        self.cluster, self.vault, self.work = services["cluster"], services["vault"], work
        docs = m.documents(m.render(VALUES))
        self.roles = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"}
        config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "secops-vault-policies")["data"]
        self.hcl = {role: config[f"{role}.hcl"] for role in ROLES}
        self.vault_roles = json.loads(config["roles.json"])
        for ns in (RELEASE_NS, NS):
            self.cluster.namespace(ns)
        for doc in docs:
            if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                doc["metadata"].setdefault("namespace", RELEASE_NS)
                self.apply(doc)
        self.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "lp-auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": f"secops-{r}", "namespace": RELEASE_NS} for r in ROLES],
        })
        # The Vault side as `secops vault-setup` applies it, with a short-lived token of the
        # bootstrap policy the chart renders (ConfigMap secops-vault-setup), nothing more.
        ca = work / "ca.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=lp",
                        "-keyout", str(work / "ca.key"), "-out", str(ca)], check=True, capture_output=True)
        setup_values = {**VALUES, "vaultSetup": {"enableMissing": True, "kubernetesHost": self.cluster.url}}
        setup_docs = m.documents(m.render(setup_values))
        rendered = next(d for d in setup_docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "secops-vault-policies")["data"]
        assert rendered == config, "vault-setup's options change nothing the roles get"
        self.bootstrap_hcl = next(d for d in setup_docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "secops-vault-setup")["data"]["vault-setup.hcl"]
        self.config_dir = work / "vault-config"
        self.config_dir.mkdir()
        for key, text in config.items():
            (self.config_dir / key).write_text(text)
        assert vault_api(self.vault.addr, "POST", "sys/policies/acl/secops-vault-setup", {"policy": self.bootstrap_hcl}) == 204
        self.setup_token = mint_token("secops-vault-setup", self.vault.addr)
        self.setup_args = ["vault-setup", "--from-dir", str(self.config_dir), "--enable-missing", "--kubernetes-host", self.cluster.url,
                           "--kubernetes-ca-file", str(ca), "--kubernetes-use-client-jwt"]
        self.first_setup = self.vault_setup()
        assert self.first_setup.returncode == 0, self.first_setup.stdout + self.first_setup.stderr[-2000:]
        # What vault-setup applied (the marker line included) is what the tests below vary.
        self.hcl = {role: self.vault.get(f"sys/policies/acl/secops-{role}")["policy"] for role in self.hcl}

    def vault_setup(self) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "VAULT_ADDR": self.vault.addr, "VAULT_TOKEN": self.setup_token, "SECOPS_MAX_ATTEMPTS": "1"}
        return subprocess.run([str(bin_dir() / "secops"), *self.setup_args], env=env, capture_output=True, text=True, timeout=60)

    def apply(self, doc):
        api = doc["apiVersion"]
        prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        plural = doc["kind"].lower() + "s"
        ns = doc["metadata"].get("namespace")
        base = f"{prefix}/namespaces/{ns}/{plural}" if ns else f"{prefix}/{plural}"
        code, _ = self.cluster.request("GET", f"{base}/{doc['metadata']['name']}")
        if code == 200:
            code, body = self.cluster.request("PUT", f"{base}/{doc['metadata']['name']}", doc)
        else:
            code, body = self.cluster.request("POST", base, doc)
        assert code in (200, 201), body

    def write_policy(self, role, hcl):
        assert vault_api(self.vault.addr, "POST", f"sys/policies/acl/secops-{role}", {"policy": hcl}) == 204

    def run(self, role: str, args: list[str]) -> subprocess.CompletedProcess:
        """Runs secops as the service account of `role`: its token for Kubernetes, and its
        audience-bound token for Vault's kubernetes auth."""
        sa = f"secops-{role}"
        tokens = {}
        for audience in ("https://kubernetes.default.svc", "vault"):
            code, body = self.cluster.request("POST", f"/api/v1/namespaces/{RELEASE_NS}/serviceaccounts/{sa}/token", {"spec": {"audiences": [audience], "expirationSeconds": 600}})
            assert code == 201, body
            tokens[audience] = body["status"]["token"]
        kubeconfig = self.work / f"{role}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "e", "cluster": {"server": self.cluster.url}}],
            "users": [{"name": sa, "user": {"token": tokens["https://kubernetes.default.svc"]}}],
            "contexts": [{"name": "c", "context": {"cluster": "e", "user": sa, "namespace": NS}}],
        }))
        jwt = self.work / f"{role}.jwt"
        jwt.write_text(tokens["vault"])
        env = {"PATH": "/usr/bin:/bin", "VAULT_ADDR": self.vault.addr, "KUBECONFIG": str(kubeconfig), "SECOPS_VAULT_AUTH": "kubernetes",
               "SECOPS_VAULT_ROLE": f"secops-{role}", "SECOPS_VAULT_AUTH_MOUNT": AUTH_MOUNT, "SECOPS_VAULT_JWT_FILE": str(jwt), "SECOPS_MAX_ATTEMPTS": "1"}
        return subprocess.run([str(bin_dir() / "secops"), *args], env=env, capture_output=True, text=True, timeout=60)


COMMANDS = {
    "handover": ["handover", "-n", NS],
    "status": ["status", "-n", NS, "--output", "json"],
    "push": ["push-secret", "-n", NS],
    "rotate": ["rotate", "--path", f"{NS}/db", "--key", "value", "--generator", "hex", "--keep-versions", "2",
               "--refresh", f"externalsecret/{NS}/db", "--restart", f"deployment/{NS}/api",
               # No ESO controller here: the consumers' privileges are the point, not the sync.
               "--sync-timeout", "0", "--rotation-id"],
}
counter = iter(range(10**6))


def command(role):
    args = list(COMMANDS[role])
    return args + [f"lp-{next(counter)}"] if role == "rotate" else args


def fresh_work(stage: Stage):
    """New inputs for each command: a pending bootstrap Secret, a changed internal Secret
    (an update of an owned path) and a new one (a path to claim)."""
    n = next(counter)
    stage.cluster.bootstrap(NS, f"boot-{n}", f"{NS}/boot-{n}", f"bootstrap-{n}")
    stage.cluster.bootstrap(NS, f"internal-{n}", f"{NS}/internal-{n}", f"internal-new-{n}", cls="internal")
    code, _ = stage.cluster.request("PATCH", f"/api/v1/namespaces/{NS}/secrets/internal", {"stringData": {"value": f"internal-{n}"}}, "application/merge-patch+json")
    assert code == 200


@pytest.fixture(scope="module")
def stage(services):
    work = Path(tempfile.mkdtemp(prefix="secops-lp-"))
    stage = Stage(services, work)
    cluster = stage.cluster
    cluster.bootstrap(NS, "db", f"{NS}/db", "db-initial")
    cluster.bootstrap(NS, "internal", f"{NS}/internal", "internal-initial", cls="internal")
    cluster.create({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db", "namespace": NS}, "spec": {}})
    cluster.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": NS}, "spec": {"template": {"metadata": {}}}})
    return stage


def succeeded(role, run) -> bool:
    """status exits 3 on a violation as on a refusal: it succeeded when it reported rows."""
    if role == "status" and run.returncode in (0, 3):
        try:
            return "rows" in json.loads(run.stdout)
        except ValueError:
            return False
    return run.returncode == 0


def test_each_command_succeeds_with_its_own_service_account(stage):
    for role in ("handover", "push", "rotate", "rotate", "status"):
        fresh_work(stage)
        run = stage.run(role, command(role))
        assert succeeded(role, run), f"{role}: {run.returncode} {run.stdout} {run.stderr[-2000:]}"
        assert "could not post the Kubernetes Event" not in run.stderr, role


@pytest.mark.parametrize("role,borrowed", [("handover", "rotate"), ("push", "rotate"), ("rotate", "handover"), ("rotate", "push"), ("handover", "status"), ("push", "status"), ("rotate", "status")])
def test_another_commands_account_is_refused_where_it_needs_more(stage, role, borrowed):
    fresh_work(stage)
    run = stage.run(borrowed, command(role))
    assert run.returncode == 3, f"{role} as {borrowed}: {run.returncode} {run.stdout}"


def roles_of(stage, role):
    if role == "rotate":
        return [k for k in stage.roles if k[1] == "secops-rotate-consumers"]
    return [k for k in stage.roles if k[1] == f"secops-{role}"]


@pytest.mark.parametrize("role", ROLES)
def test_removing_any_single_rule_breaks_a_step(stage, role):
    assert roles_of(stage, role), f"the chart renders Roles for {role}"
    for key in roles_of(stage, role):
        original = stage.roles[key]
        for index in range(len(original["rules"])):
            reduced = copy.deepcopy(original)
            reduced["rules"].pop(index)
            stage.apply(reduced)
            try:
                fresh_work(stage)
                run = stage.run(role, command(role))
                degraded = not succeeded(role, run) or "could not post the Kubernetes Event" in run.stderr
                assert degraded, f"{key} still works without rule {original['rules'][index]}"
            finally:
                stage.apply(original)


@pytest.mark.parametrize("role", ROLES)
def test_removing_any_single_vault_policy_path_breaks_a_step(stage, role):
    hcl = stage.hcl[role]
    assert len(policy_blocks(hcl)) >= 2, hcl
    for block in policy_blocks(hcl):
        stage.write_policy(role, hcl.replace(block, ""))
        try:
            fresh_work(stage)
            run = stage.run(role, command(role))
            assert not succeeded(role, run), f"{role} still works without {block.splitlines()[0]}"
        finally:
            stage.write_policy(role, hcl)


@pytest.mark.parametrize("role,cls,origin", [("handover", "bootstrap", "bootstrap"), ("push", "internal", "push")])
def test_taking_over_the_claim_of_a_re_created_origin_needs_update_on_claims(stage, role, cls, origin):
    """`update` on claims is there for one thing: a claim naming a uid that no longer exists
    (the Secret was re-created mid-handover) is taken over with cas. Without it, that Secret
    is refused; with it, it is handed over (or pushed)."""
    hcl = stage.hcl[role]
    block = next(b for b in policy_blocks(hcl) if "/secops/claims/" in b)
    assert '"update"' in block, block
    without_update = hcl.replace(block, block.replace('"create", "read", "update"', '"create", "read"'))
    assert without_update != hcl
    for policy, expected in ((without_update, 3), (hcl, 0)):
        name = f"taken-{next(counter)}"
        stage.cluster.bootstrap(NS, name, f"{NS}/{name}", f"value-{name}", cls=cls)
        claim = {"data": {"origin": f"{origin}:{NS}/{name}", "uid": "uid-of-a-deleted-object", "claimed_at": "1"}}
        assert vault_api(stage.vault.addr, "POST", f"secret/data/secops/claims/{NS}/{name}", claim) == 200
        stage.write_policy(role, policy)
        try:
            run = stage.run(role, command(role))
        finally:
            stage.write_policy(role, hcl)
        assert run.returncode == expected, f"{role}: {run.returncode} {run.stdout} {run.stderr[-2000:]}"
        items = {i["name"]: i for i in json.loads(run.stdout)["items"]}
        if expected:
            assert items[name]["error"]["kind"] == "forbidden", items[name]
        else:
            assert items[name]["outcome"] in ("consumed", "pushed"), items[name]


def test_vault_setup_applied_everything_and_a_re_run_changes_nothing(stage):
    applied = json.loads(stage.first_setup.stdout)
    assert applied["outcome"] == "done"
    kinds = {(i["kind"], i["path"]) for i in applied["items"]}
    for role in ROLES:
        assert ("policy", f"sys/policies/acl/secops-{role}") in kinds
        assert ("role", f"auth/{AUTH_MOUNT}/role/secops-{role}") in kinds
    assert ("auth-method", f"sys/auth/{AUTH_MOUNT}") in kinds and ("auth-config", f"auth/{AUTH_MOUNT}/config") in kinds
    again = stage.vault_setup()
    assert again.returncode == 0, again.stdout
    assert {i["outcome"] for i in json.loads(again.stdout)["items"]} == {"unchanged"}


def test_the_bootstrap_policy_grants_nothing_beyond_what_vault_setup_writes(stage):
    token = stage.setup_token
    def call(method, path, body=None):
        request = urllib.request.Request(f"{stage.vault.addr}/v1/{path}", data=None if body is None else json.dumps(body).encode(), method=method, headers={"X-Vault-Token": token})
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
    assert call("GET", "sys/policies/acl/secops-handover") == 200
    for method, path, body in [
        ("PUT", "sys/policies/acl/secops-vault-setup", {"policy": 'path "*" { capabilities = ["sudo"] }'}),  # never its own policy
        ("PUT", "sys/policies/acl/anything-else", {"policy": 'path "*" { capabilities = ["read"] }'}),
        ("POST", f"auth/{AUTH_MOUNT}/role/secops-vault-setup", {"token_policies": ["root"]}),
        ("POST", f"auth/{AUTH_MOUNT}/role/other", {"bound_service_account_names": ["x"], "bound_service_account_namespaces": ["x"]}),
        ("GET", f"secret/data/{NS}/db", None),
        ("POST", "sys/mounts/other", {"type": "kv"}),
        ("GET", "sys/policies/acl", None),
    ]:
        assert call(method, path, body) == 403, f"{method} {path}"
