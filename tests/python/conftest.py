"""Fixtures: the rendered manifests, and a dev OpenBao plus the Kubernetes API emulator for
the tests that run the templates with the real binary."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import secops_manifests as manifests  # noqa: E402
from pods import ApiServer  # noqa: E402


def bin_dir() -> Path:
    return Path(os.environ.get("SECOPS_BIN_DIR", ROOT / "target" / "debug"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The emulator through its REST API, as the cluster admin."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def request(self, method: str, path: str, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def create(self, obj: dict) -> dict:
        api = obj["apiVersion"]
        prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        plural = {"Namespace": "namespaces", "Secret": "secrets", "ExternalSecret": "externalsecrets", "Deployment": "deployments"}[obj["kind"]]
        ns = obj["metadata"].get("namespace")
        path = f"{prefix}/namespaces/{ns}/{plural}" if ns else f"{prefix}/{plural}"
        code, body = self.request("POST", path, obj)
        assert code in (201, 409), body
        return body

    def namespace(self, name: str):
        self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def secret(self, ns: str, name: str):
        code, body = self.request("GET", f"/api/v1/namespaces/{ns}/secrets/{name}")
        return body if code == 200 else None

    def bootstrap(self, ns: str, name: str, path: str, value: str, cls: str = "bootstrap"):
        self.create({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": cls}, "annotations": {"secops.dev/vault-path": path}},
            "data": {"value": base64.b64encode(value.encode()).decode()},
        })


@contextmanager
def eso_controller(cluster: Cluster, namespaces, fail: bool = False):
    """A stand-in for External Secrets Operator's controller: syncs each ExternalSecret whose
    `force-sync` annotation changed, reporting ESO's documented status (`refreshTime`, the
    `Ready` condition, `syncedResourceVersion`), so `rotate` restarts workloads after it."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            for ns in namespaces:
                base = f"/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets"
                code, body = cluster.request("GET", base)
                for es in body.get("items", []) if code == 200 else []:
                    wanted = (es["metadata"].get("annotations") or {}).get("force-sync")
                    if not wanted or (es.get("status") or {}).get("syncedResourceVersion") == wanted:
                        continue
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    ready = {"type": "Ready", "status": "False" if fail else "True", "reason": "SecretSyncedError" if fail else "SecretSynced"}
                    status = {"refreshTime": now, "conditions": [ready]}
                    if not fail:
                        status["syncedResourceVersion"] = wanted
                    cluster.request("PATCH", f"{base}/{es['metadata']['name']}", {"status": status}, "application/merge-patch+json")
            stop.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Vault:
    def __init__(self, addr: str):
        self.addr = addr

    def get(self, path: str):
        request = urllib.request.Request(f"{self.addr}/v1/{path}", headers={"X-Vault-Token": "root"})
        try:
            with urllib.request.urlopen(request) as response:
                return json.loads(response.read())["data"]
        except urllib.error.HTTPError:
            return None

    def current_version(self, mount: str, path: str) -> int:
        meta = self.get(f"{mount}/metadata/{path}")
        return meta["current_version"] if meta else 0


@pytest.fixture(scope="session")
def services():
    work = Path(tempfile.mkdtemp(prefix="secops-py-"))
    port = free_port()
    bao = subprocess.Popen(
        ["bao", "server", "-dev", "-dev-root-token-id=root", f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
        stdout=open(work / "bao.log", "w"), stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(work)},
    )
    emulator = subprocess.Popen(
        [str(bin_dir() / "kube-emulator"), "--write-kubeconfig", str(work / "kubeconfig"), "--tls-dir", str(work / "emulator-tls")],
        stdout=subprocess.PIPE, text=True,
    )
    url = emulator.stdout.readline().strip()
    # HTTPS with the emulator's own CA, for pods that configure themselves in-cluster.
    https_port = int(emulator.stdout.readline().strip().rsplit(":", 1)[1])
    addr = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{addr}/v1/sys/health")
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    token = yaml.safe_load((work / "kubeconfig").read_text())["users"][0]["user"]["token"]
    try:
        yield {"cluster": Cluster(url, token), "vault": Vault(addr), "api": ApiServer("127.0.0.1", https_port, work / "emulator-tls" / "ca.crt"),
               "tls_dir": work / "emulator-tls", "work": work, "env": {
            "VAULT_ADDR": addr, "VAULT_TOKEN": "root", "SECOPS_VAULT_AUTH": "token", "KUBECONFIG": str(work / "kubeconfig"),
            "SECOPS_MAX_ATTEMPTS": "2",
        }}
    finally:
        for process in (bao, emulator):
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def workflow_docs() -> list[dict]:
    docs = []
    for path in sorted(manifests.WORKFLOWS.glob("*-*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture
def runner(services, workflow_docs):
    from argo import Runner

    templates = {d["metadata"]["name"]: d for d in workflow_docs if d["kind"] == "WorkflowTemplate"}
    return Runner(str(bin_dir() / "secops"), services["env"], templates)
