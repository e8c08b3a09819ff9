"""Render the Helm chart (Helm's Go SDK via helm-python-sdk) and validate manifests strictly:
Kubernetes kinds with kubernetes-validate, Argo kinds against the Argo schemas, plus the
checks no schema expresses. Shared by scripts/render-workflows and the Python tests."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "secops"
WORKFLOWS = ROOT / "workflows"
RELEASE = {"name": "secops", "namespace": "secops"}
KUBERNETES_VERSION = "1.33.0"
ARGO_KINDS = {"WorkflowTemplate", "CronWorkflow", "Workflow", "EventSource", "Sensor"}
EXPRESSION = re.compile(r"^\{\{.*\}\}$")


SCHEMA_FILES = (
    "argo-workflows/argoproj.io_workflowtemplates.yaml",
    "argo-workflows/argoproj.io_cronworkflows.yaml",
    "argo-workflows/argoproj.io_workflows.yaml",
    "argo-events/schema.json",
)
SCHEMA_FIX = (
    "run `scripts/fetch-schemas .work/schemas` where GitHub is reachable (sha256-checked), "
    "or set SECOPS_SCHEMA_DIR to a directory holding the pinned Argo schemas"
)


def schema_dir() -> Path | None:
    """The Argo schemas are data the project may not copy. Found as scripts/test finds them:
    $SECOPS_SCHEMA_DIR (taken as given: a wrong one fails), ../shared/schemas beside the
    checkout, or .work/schemas (scripts/fetch-schemas moves a file there only once its sha256
    matched). None when there are none: the tests that need them skip (schemas_missing)."""
    if os.environ.get("SECOPS_SCHEMA_DIR"):
        return Path(os.environ["SECOPS_SCHEMA_DIR"])
    for candidate in (ROOT.parent / "shared" / "schemas", ROOT / ".work" / "schemas"):
        if all((candidate / name).is_file() for name in SCHEMA_FILES):
            return candidate
    return None


def schemas_missing() -> str | None:
    """Why the Argo schema checks cannot run, with the command that fixes it; None when they can."""
    if schema_dir() is not None:
        return None
    why = os.environ.get("SECOPS_SCHEMAS_MISSING") or "no Argo schemas: SECOPS_SCHEMA_DIR unset, no ../shared/schemas, no .work/schemas"
    return f"{why}; {SCHEMA_FIX}"


def render(values: dict | None = None) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values or {}, **RELEASE)


def documents(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for name, text in sorted(rendered.items()):
        if name.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _strict(node):
    """additionalProperties: false on every object with properties, unless it preserves
    unknown fields: the upstream schemas are open, which would let typos through."""
    if isinstance(node, dict):
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def _int_or_string(validator, enabled, instance, schema):
    """Int-or-string fields must be a number (or digits) or an Argo `{{...}}` expression.
    Quantities (which carry their own `pattern`) are left to that pattern."""
    if enabled and "pattern" not in schema and isinstance(instance, str) and not (instance.isdigit() or EXPRESSION.match(instance)):
        yield jsonschema.ValidationError(f"{instance!r} is neither a number nor a {{{{...}}}} expression")


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-int-or-string": _int_or_string})
_cache: dict[str, jsonschema.Draft7Validator] = {}

CRD_FILES = {
    "WorkflowTemplate": "argo-workflows/argoproj.io_workflowtemplates.yaml",
    "CronWorkflow": "argo-workflows/argoproj.io_cronworkflows.yaml",
    "Workflow": "argo-workflows/argoproj.io_workflows.yaml",
}


def argo_validator(kind: str) -> jsonschema.Draft7Validator:
    if kind not in _cache:
        if schema_dir() is None:
            raise FileNotFoundError(schemas_missing())
        if kind in CRD_FILES:
            crd = yaml.safe_load((schema_dir() / CRD_FILES[kind]).read_text())
            schema = _strict(copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
        else:
            events = json.loads((schema_dir() / "argo-events" / "schema.json").read_text())
            definitions = events["definitions"]
            definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
            schema = _strict({"$ref": f"#/definitions/io.argoproj.events.v1alpha1.{kind}", "definitions": definitions})
        _cache[kind] = _Validator(schema)
    return _cache[kind]


def metadata_checks(doc: dict) -> list[str]:
    """CRD schemas leave `metadata` open; the API server still checks ObjectMeta."""
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return ["metadata must be a map"]
    problems = []
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", str(meta.get("name") or meta.get("generateName", "x")).rstrip("-") or "x"):
        problems.append(f"metadata.name {meta.get('name')!r} is not a DNS subdomain")
    for field in ("labels", "annotations"):
        value = meta.get(field, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            problems.append(f"metadata.{field} must be a map of strings")
    return problems


def project_checks(doc: dict) -> list[str]:
    """What the schemas cannot say: templates named and unique, references resolved."""
    problems = metadata_checks(doc)
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronWorkflow":
        spec = spec.get("workflowSpec", {})
    templates = spec.get("templates") if isinstance(spec, dict) else None
    if templates is None:
        return problems
    names = [t.get("name") for t in templates]
    if any(not n for n in names):
        problems.append("a template has no name")
    if len(set(names)) != len(names):
        problems.append(f"duplicate template names: {sorted(n for n in names if names.count(n) > 1)}")
    if spec.get("entrypoint") not in names:
        problems.append(f"entrypoint {spec.get('entrypoint')!r} names no template")
    for template in templates:
        for group in template.get("steps") or []:
            for step in group:
                if step.get("template") not in names:
                    problems.append(f"step {step.get('name')!r} refers to unknown template {step.get('template')!r}")
        for task in (template.get("dag") or {}).get("tasks", []):
            if task.get("template") not in names:
                problems.append(f"task {task.get('name')!r} refers to unknown template {task.get('template')!r}")
    return problems


def validate(doc: dict) -> list[str]:
    """Every problem with one manifest; empty when it is valid."""
    kind = doc.get("kind", "")
    if kind in ARGO_KINDS:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in argo_validator(kind).iter_errors(doc)]
        return errors + project_checks(doc)
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [str(error.message)]
    return []


def workflow_files(values: dict) -> dict[str, str]:
    """The Argo manifests (and the plain CronJob) as files of workflows/, one per object."""
    files = {}
    for doc in documents(render(values)):
        if doc["kind"] in ARGO_KINDS or doc["kind"] == "CronJob":
            name = f"{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
            header = "# Generated from charts/secops by scripts/render-workflows; do not edit.\n"
            files[name] = header + yaml.safe_dump(doc, sort_keys=False, width=1000)
    return files


def workflow_values() -> dict:
    return yaml.safe_load((WORKFLOWS / "values.yaml").read_text()) or {}
