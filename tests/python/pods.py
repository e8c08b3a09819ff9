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


def workflow_pod(spec: dict, template: dict, origin: str) -> Pod:
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
