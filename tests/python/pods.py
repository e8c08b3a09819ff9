"""The pods Kubernetes (and Argo's controller) would make from rendered manifests: one per
container template of a WorkflowTemplate, one per CronJob and Job. Shared by the manifest
checks and the runner (argo.py), so both judge the same pod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass
class Pod:
    origin: str  # Kind/name[/template]
    spec: dict  # a PodSpec: serviceAccountName, automountServiceAccountToken, volumes, containers


# Fields Argo copies from the WorkflowSpec, then the template, onto the pod (template wins).
_INHERITED = ("serviceAccountName", "automountServiceAccountToken", "securityContext")
# Pod-shaping fields this module does not model: a manifest using one must not pass unjudged.
_NOT_MODELLED = ("podSpecPatch", "initContainers", "sidecars", "executor", "hostNetwork", "nodeSelector", "affinity", "tolerations", "priorityClassName")
_CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "resources", "securityContext", "volumeMounts", "workingDir"}


def workflow_pod(spec: dict, template: dict, origin: str) -> Pod:
    for holder in (spec, template):
        unmodelled = [f for f in _NOT_MODELLED if f in holder]
        if unmodelled:
            raise ValueError(f"{origin}: {unmodelled} not modelled by tests/python/pods.py")
    extra = set(template["container"]) - _CONTAINER_FIELDS
    if extra:
        raise ValueError(f"{origin}: container fields {sorted(extra)} not modelled by tests/python/pods.py")
    pod: dict = {}
    for field in _INHERITED:
        value = template.get(field, spec.get(field))
        if value is not None:
            pod[field] = value
    pod["volumes"] = list(spec.get("volumes", [])) + list(template.get("volumes", []))
    pod["containers"] = [{"name": "main", **template["container"]}]
    return Pod(origin, pod)


def pod_specs(docs: list[dict]) -> Iterator[Pod]:
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "WorkflowTemplate":
            for template in doc["spec"]["templates"]:
                if "container" in template:
                    yield workflow_pod(doc["spec"], template, f"{kind}/{name}/{template['name']}")
        elif kind == "CronJob":
            yield Pod(f"{kind}/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif kind == "Job":
            yield Pod(f"{kind}/{name}", doc["spec"]["template"]["spec"])


def service_account_of(pod: Pod) -> str:
    return pod.spec.get("serviceAccountName") or "default"


def would_mount_token(pod_spec: dict, service_account: dict) -> bool:
    """Kubernetes' rule (ServiceAccount admission): the pod's automountServiceAccountToken
    when set, else the ServiceAccount's, else true."""
    for holder in (pod_spec, service_account):
        value = holder.get("automountServiceAccountToken")
        if value is not None:
            return bool(value)
    return True


# -- building a pod on this machine ------------------------------------------------------------
# Honoured: serviceAccountName (the account must exist), automountServiceAccountToken (pod
# field, else the ServiceAccount's, else true) with the token from TokenRequest; volumes
# emptyDir, configMap, secret and projected (serviceAccountToken with its audience and
# expirationSeconds, configMap, secret), with items; volumeMounts mountPath and subPath (paths
# in env values and args are mapped to them); env value and valueFrom fieldRef
# (metadata.name, metadata.namespace, spec.serviceAccountName), secretKeyRef, configMapKeyRef
# (optional too); workingDir; command and args.
# Ignored (the binary runs as this process, not in a container): image, imagePullPolicy,
# resources, securityContext (pod and container), readOnly mounts, emptyDir sizeLimit,
# activeDeadlineSeconds, parallelism, retry backoff. Refused, so no manifest passes unjudged:
# podSpecPatch, init/sidecar containers, scheduling fields, envFrom and unknown container
# fields, other volume kinds and valueFrom sources.

import base64
import json
from pathlib import Path

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBELET_TOKEN_SECONDS = 3607  # what the kubelet asks for the automounted token


class PodRefused(Exception):
    """Kubernetes would not create (or start) this pod."""


@dataclass
class BuiltPod:
    env: dict
    mounts: dict  # mountPath -> host directory (or file, for a subPath)
    cwd: str

    def host_path(self, path: str) -> str:
        """A path as the container sees it, on this machine."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return str(self.mounts[mount]) + path[len(mount):]
        return path


class PodMaker:
    """Makes pods from PodSpecs in one namespace of the emulator, as the kubelet would."""

    def __init__(self, cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace

    def _get(self, path: str, what: str, optional: bool = False):
        code, body = self.cluster.request("GET", f"/api/v1/namespaces/{self.namespace}/{path}")
        if code == 200:
            return body
        if optional:
            return None
        raise PodRefused(f"{what} not found ({code})")

    def token(self, account: str, audience: str | None, seconds: int) -> str:
        spec = {"expirationSeconds": seconds}
        if audience:
            spec["audiences"] = [audience]
        code, body = self.cluster.request("POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", {"spec": spec})
        if code != 201:
            raise PodRefused(f"TokenRequest for {account}: {code} {body}")
        return body["status"]["token"]

    def _key(self, source: dict, kind: str, key: str, optional: bool) -> str | None:
        if kind == "secret":
            obj = self._get(f"secrets/{source['name']}", f"secret {source['name']}", optional)
            value = (obj or {}).get("data", {}).get(key)
            value = None if value is None else base64.b64decode(value).decode()
        else:
            obj = self._get(f"configmaps/{source['name']}", f"configmap {source['name']}", optional)
            value = (obj or {}).get("data", {}).get(key)
        if value is None and not optional:
            raise PodRefused(f"{kind} {source['name']} has no key {key}")
        return value

    def _files(self, directory: Path, kind: str, name: str, items, optional: bool):
        path = f"secrets/{name}" if kind == "secret" else f"configmaps/{name}"
        obj = self._get(path, f"{kind} {name}", optional) or {}
        data = obj.get("data", {})
        wanted = items or [{"key": k, "path": k} for k in data]
        for item in wanted:
            value = data[item["key"]]
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(value) if kind == "secret" else value.encode())

    def _volume(self, volume: dict, directory: Path, account: str):
        directory.mkdir(parents=True)
        if "emptyDir" in volume:
            return
        if "configMap" in volume:
            c = volume["configMap"]
            self._files(directory, "configMap", c["name"], c.get("items"), c.get("optional", False))
        elif "secret" in volume:
            s = volume["secret"]
            self._files(directory, "secret", s["secretName"], s.get("items"), s.get("optional", False))
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                if "serviceAccountToken" in source:
                    t = source["serviceAccountToken"]
                    (directory / t["path"]).write_text(self.token(account, t.get("audience"), int(t.get("expirationSeconds", 3600))))
                elif "configMap" in source or "secret" in source:
                    kind = "configMap" if "configMap" in source else "secret"
                    s = source[kind]
                    self._files(directory, kind, s["name"], s.get("items"), s.get("optional", False))
                else:
                    raise PodRefused(f"projected source {sorted(source)} is not emulated")
        else:
            raise PodRefused(f"volume {volume['name']}: kind not emulated")

    def build(self, spec: dict, container: dict, pod_name: str, root: Path, substitute=lambda s: s) -> BuiltPod:
        account = spec.get("serviceAccountName") or "default"
        service_account = self._get(f"serviceaccounts/{account}", f"serviceaccount {account}")
        volumes = {}
        for volume in spec.get("volumes", []):
            volumes[volume["name"]] = root / "volumes" / volume["name"]
            self._volume(volume, volumes[volume["name"]], account)
        mounts = {}
        if would_mount_token(spec, service_account):
            directory = root / "serviceaccount"
            directory.mkdir(parents=True)
            (directory / "token").write_text(self.token(account, None, KUBELET_TOKEN_SECONDS))
            (directory / "namespace").write_text(self.namespace)
            # The emulator serves plain HTTP: no ca.crt to write.
            mounts[SERVICE_ACCOUNT_DIR] = directory
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                raise PodRefused(f"volumeMount {mount['name']}: no such volume")
            mounts[mount["mountPath"]] = volumes[mount["name"]] / mount.get("subPath", "")
        fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace, "spec.serviceAccountName": account}
        home = root / "home"
        home.mkdir()
        pod = BuiltPod({}, mounts, str(home))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = pod.host_path(substitute(variable["value"]))
                continue
            source = variable["valueFrom"]
            if "fieldRef" in source:
                env[variable["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secret" if "secretKeyRef" in source else "configMap"
                ref = source[f"{kind}KeyRef"]
                value = self._key(ref, kind, ref["key"], ref.get("optional", False))
                if value is not None:
                    env[variable["name"]] = value
            else:
                raise PodRefused(f"env {variable['name']}: valueFrom {sorted(source)} not emulated")
        if SERVICE_ACCOUNT_DIR in mounts:
            # kube-rs reads the in-cluster files at fixed paths, which this process cannot
            # have: the same credentials (the mounted token file, the namespace) as a
            # kubeconfig, the one translation the runner makes. No token, no kubeconfig.
            directory = mounts[SERVICE_ACCOUNT_DIR]
            kubeconfig = root / "in-cluster.kubeconfig"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
                "clusters": [{"name": "in-cluster", "cluster": {"server": self.cluster.url}}],
                "users": [{"name": account, "user": {"tokenFile": str(directory / "token")}}],
                "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": account, "namespace": (directory / "namespace").read_text()}}],
            }))
            env["KUBECONFIG"] = str(kubeconfig)
        if container.get("workingDir"):
            pod.cwd = pod.host_path(container["workingDir"])
            Path(pod.cwd).mkdir(parents=True, exist_ok=True)
        pod.env = env
        return pod
