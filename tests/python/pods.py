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
# field, else the ServiceAccount's, else true) with the token from TokenRequest, the cluster's
# ca.crt and the namespace in the service-account volume, KUBERNETES_SERVICE_HOST/PORT as the
# kubelet sets them; volumes emptyDir, configMap, secret and projected (serviceAccountToken with
# its audience and expirationSeconds, configMap, secret), with items; volumeMounts mountPath,
# subPath and readOnly; env value and valueFrom fieldRef (metadata.name, metadata.namespace,
# spec.serviceAccountName), secretKeyRef, configMapKeyRef (optional too); workingDir; command
# and args. As a container (Podman), also: the image (the project's, built from the Dockerfile,
# in place of the published tag), securityContext (runAsUser/Group, fsGroup, runAsNonRoot,
# readOnlyRootFilesystem, capabilities, allowPrivilegeEscalation), resources.limits.memory.
# As the binary (Binary), the pod's files at host paths: paths in env values and args are
# mapped to them, and the service-account volume becomes a kubeconfig (kube-rs reads the
# in-cluster files at fixed paths only).
# Ignored: imagePullPolicy, cpu limits and requests, seccompProfile (the runtime's default is
# RuntimeDefault), emptyDir sizeLimit, activeDeadlineSeconds, parallelism, retry backoff.
# Refused, so no manifest passes unjudged: podSpecPatch, init/sidecar containers, scheduling
# fields, envFrom and unknown container fields, other volume kinds and valueFrom sources.

import base64
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBELET_TOKEN_SECONDS = 3607  # what the kubelet asks for the automounted token
API_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


class PodRefused(Exception):
    """Kubernetes would not create (or start) this pod."""


@dataclass
class ApiServer:
    """The API server as a pod finds it: the `kubernetes` Service's address (env) and the
    cluster CA (ca.crt in the service-account volume). Host network: the emulator's HTTPS port."""
    host: str
    port: int
    ca: Path


@dataclass
class BuiltPod:
    env: dict  # as the container sees it
    mounts: dict  # mountPath -> host directory (or file, for a subPath)
    read_only: set  # mountPaths mounted read-only
    working_dir: str | None
    security: dict  # the container's securityContext over the pod's (fsGroup from the pod)
    memory_limit: str | None
    root: Path

    def host_path(self, path: str) -> str:
        """A path as the container sees it, on this machine."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return str(self.mounts[mount]) + path[len(mount):]
        return path


def _write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)  # the kubelet's defaultMode


class PodMaker:
    """Makes pods from PodSpecs in one namespace of the emulator, as the kubelet would."""

    def __init__(self, cluster, namespace: str, api: ApiServer):
        self.cluster, self.namespace, self.api = cluster, namespace, api

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
            _write(directory / item["path"], base64.b64decode(value) if kind == "secret" else value.encode())

    def _volume(self, volume: dict, directory: Path, account: str):
        directory.mkdir(parents=True)
        if "emptyDir" in volume:
            directory.chmod(0o777)  # as the kubelet makes it: any user of the pod writes
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
                    _write(directory / t["path"], self.token(account, t.get("audience"), int(t.get("expirationSeconds", 3600))).encode())
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
        security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        if security.get("runAsNonRoot") and security.get("runAsUser") == 0:
            raise PodRefused("runAsNonRoot with runAsUser 0")
        volumes = {}
        for volume in spec.get("volumes", []):
            volumes[volume["name"]] = root / "volumes" / volume["name"]
            self._volume(volume, volumes[volume["name"]], account)
        mounts, read_only = {}, set()
        if would_mount_token(spec, service_account):
            # The kubelet's projected volume kube-api-access-*: token, ca.crt, namespace.
            directory = root / "serviceaccount"
            _write(directory / "token", self.token(account, None, KUBELET_TOKEN_SECONDS).encode())
            _write(directory / "ca.crt", self.api.ca.read_bytes())
            _write(directory / "namespace", self.namespace.encode())
            mounts[SERVICE_ACCOUNT_DIR] = directory
            read_only.add(SERVICE_ACCOUNT_DIR)
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                raise PodRefused(f"volumeMount {mount['name']}: no such volume")
            mounts[mount["mountPath"]] = volumes[mount["name"]] / mount.get("subPath", "")
            if mount.get("readOnly"):
                read_only.add(mount["mountPath"])
        fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace, "spec.serviceAccountName": account}
        # The kubelet gives every container the `kubernetes` Service's address.
        env = {"KUBERNETES_SERVICE_HOST": self.api.host, "KUBERNETES_SERVICE_PORT": str(self.api.port)}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = substitute(variable["value"])
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
        memory = container.get("resources", {}).get("limits", {}).get("memory")
        return BuiltPod(env, mounts, read_only, container.get("workingDir"), security, memory, root)


# -- running a built pod -----------------------------------------------------------------------
class Binary:
    """The locally built binary as a child of this process, with the pod's files at host paths."""

    mode = "binary"

    def __init__(self, secops_bin: str):
        self.secops_bin = secops_bin

    def env(self, pod: BuiltPod) -> dict:
        home = pod.root / "home"
        home.mkdir(exist_ok=True)
        # The API server's address goes into the kubeconfig below, never to in-cluster lookups
        # on this machine (whose /var/run/secrets, if any, belong to another cluster).
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        env.update({k: pod.host_path(v) for k, v in pod.env.items() if k not in API_ENV})
        if SERVICE_ACCOUNT_DIR in pod.mounts:
            # kube-rs reads the in-cluster files at fixed paths, which this process cannot
            # have: the same credentials (token file, CA, namespace) and the same https address
            # as a kubeconfig, the one translation this mode makes. No token, no kubeconfig.
            directory = pod.mounts[SERVICE_ACCOUNT_DIR]
            kubeconfig = pod.root / "in-cluster.kubeconfig"
            server = f"https://{pod.env['KUBERNETES_SERVICE_HOST']}:{pod.env['KUBERNETES_SERVICE_PORT']}"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
                "clusters": [{"name": "in-cluster", "cluster": {"server": server, "certificate-authority": str(directory / "ca.crt")}}],
                "users": [{"name": "in-cluster", "user": {"tokenFile": str(directory / "token")}}],
                "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "in-cluster", "namespace": (directory / "namespace").read_text()}}],
            }))
            env["KUBECONFIG"] = str(kubeconfig)
        return env

    def start(self, pod: BuiltPod, command: list[str], args: list[str]):
        assert command == ["/secops"], f"unexpected entrypoint {command}"
        cwd = pod.host_path(pod.working_dir) if pod.working_dir else str(pod.root / "home")
        Path(cwd).mkdir(parents=True, exist_ok=True)
        env = self.env(pod)
        process = subprocess.Popen([self.secops_bin, *(pod.host_path(a) for a in args)], env=env, cwd=cwd,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return process, env

    def kill(self, process):
        process.kill()


class Podman:
    """Each step as a container of the project's image (scripts/test-image builds it from the
    Dockerfile and saves it to $SECOPS_IMAGE_ARCHIVE), with the pod's mounts, env and
    securityContext, on the host network: in-cluster configuration as in a cluster. Podman's
    settings are scripts/test-image's (rootful, runc, vfs storage in a directory of its own)."""

    mode = "container"
    IMAGE = "localhost/secops:test"

    def __init__(self, work: Path):
        self.work = work
        (work / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{work}/storage"\nrunroot = "{work}/run"\n')
        (work / "containers.conf").write_text(
            '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
            f'events_logger = "file"\nevents_logfile_path = "{work}/events.log"\n')
        (work / "registries.conf").write_text("")  # no registry: an image name means a local one
        self.base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
                         "CONTAINERS_CONF": str(work / "containers.conf"), "CONTAINERS_REGISTRIES_CONF": str(work / "registries.conf")}

    @classmethod
    def from_environment(cls) -> tuple["Podman | None", str]:
        """The engine, or None and why the steps run as the binary instead."""
        archive = os.environ.get("SECOPS_IMAGE_ARCHIVE")
        if not archive:
            return None, "SECOPS_IMAGE_ARCHIVE is not set (scripts/test sets it; scripts/test-image saves the image there)"
        if not Path(archive).is_file():
            return None, f"no image archive at SECOPS_IMAGE_ARCHIVE={archive} (scripts/test-image skipped or failed?)"
        if os.geteuid() != 0:
            return None, "podman runs rootful here and this is not root"
        if not shutil.which("podman") or not shutil.which("runc"):
            return None, "podman or runc is not installed"
        engine = cls(Path(tempfile.mkdtemp(prefix="secops-podman-")))
        loaded = engine.podman("load", "-q", "-i", archive)
        if loaded.returncode != 0:
            engine.close()
            return None, f"podman load {archive} failed: {loaded.stderr.strip()[-300:]}"
        return engine, f"each step runs as a container of {cls.IMAGE} (from {archive})"

    def podman(self, *args: str, **kwargs):
        return subprocess.run(["podman", "--runtime", "runc", *args], env=self.base_env, capture_output=True, text=True, **kwargs)

    def close(self):
        self.podman("rm", "-af")
        shutil.rmtree(self.work, ignore_errors=True)

    def start(self, pod: BuiltPod, command: list[str], args: list[str]):
        name = f"secops-step-{uuid.uuid4().hex[:12]}"
        argv = ["podman", "--runtime", "runc", "run", "--rm", "--name", name, "--network", "host", "--ulimit", "host",
                "--entrypoint", json.dumps(command)]
        security = pod.security
        if "runAsUser" in security:
            argv += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
        if "fsGroup" in security:
            argv += ["--group-add", str(security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            # Kubernetes adds no tmpfs of its own (podman would, on /tmp and /run).
            argv += ["--read-only", "--read-only-tmpfs=false"]
        for cap in security.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", cap]
        for cap in security.get("capabilities", {}).get("add", []):
            argv += ["--cap-add", cap]
        if security.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        if pod.memory_limit:
            argv += ["--memory", pod.memory_limit.replace("Mi", "m").replace("Gi", "g")]
        for path, source in pod.mounts.items():
            argv += ["-v", f"{source}:{path}:{'ro' if path in pod.read_only else 'rw'}"]
        if pod.working_dir:
            argv += ["--workdir", pod.working_dir]
        # Values from the environment of podman itself (`-e NAME`), never in its argv.
        for variable in pod.env:
            argv += ["-e", variable]
        argv += [self.IMAGE, *args]
        process = subprocess.Popen(argv, env={**self.base_env, **pod.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        process.container = name
        return process, dict(pod.env)

    def kill(self, process):
        self.podman("kill", "--signal", "KILL", process.container)
