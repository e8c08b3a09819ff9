"""A small interpreter for the Argo features the secops templates use: parameters,
`{{item.*}}`, `withParam` over a step's output, output parameters from files, `when`, and
retryStrategy on exit 75; and for the Sensors' parameter mappings and the webhook's
authSecret. Each container runs the project's secops (the binary, or its image), so a
template whose arguments do not match the CLI, or whose output paths do not match what the
binary writes, fails here.

Two ways to run a step. With `pods` (a pods.PodMaker), the pod Kubernetes would make from
the template (pods.py): its service account, its token only where Kubernetes would mount
one, its volumes, mounts and env resolved from the emulator, and nothing from the harness;
run as a container of the project's image (`engine`: pods.Podman) or as the binary with the
same files (pods.Binary). Without, the harness's env (an admin kubeconfig, a root Vault
token) stands in for them."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from pods import Binary, PodMaker, Podman, PodRefused, workflow_pod

TOKEN = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


class StepFailed(Exception):
    pass


def _dot_get(data, path: str):
    for part in path.split("."):
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(path)
    return data


def _dot_set(data, path: str, value):
    parts = path.split(".")
    for part in parts[:-1]:
        data = data[int(part)] if isinstance(data, list) else data[part]
    last = parts[-1]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


class Runner:
    def __init__(self, secops_bin: str, env: dict[str, str], templates: dict[str, dict], pods: PodMaker | None = None,
                 engine: Podman | Binary | None = None):
        self.secops_bin = secops_bin
        self.pods = pods
        self.engine = engine  # how a pod runs: a container (pods.Podman) or the binary (default)
        self.on_step = None  # called with a step's template name as its pod starts
        self.interrupt: threading.Event | None = None  # set: the running step is killed
        self.env = env
        self.templates = templates  # WorkflowTemplates by name
        self.runs: list[dict] = []  # every container run: args, exit code, outputs

    # -- expressions -------------------------------------------------------------------
    @staticmethod
    def substitute(text: str, scope: dict) -> str:
        def replace(match):
            key = match.group(1)
            if key in scope:
                return str(scope[key])
            raise KeyError(f"unresolved {{{{{key}}}}}")
        return TOKEN.sub(replace, text)

    @staticmethod
    def evaluate(expression: str) -> bool:
        match = re.fullmatch(r"\s*(.*?)\s*(==|!=)\s*(.*?)\s*", expression)
        if not match:
            raise ValueError(f"unsupported when expression {expression!r}")
        left, op, right = (match.group(1).strip("'\""), match.group(2), match.group(3).strip("'\""))
        try:
            equal = float(left) == float(right)
        except ValueError:
            equal = left == right
        return equal if op == "==" else not equal

    # -- workflows -----------------------------------------------------------------------
    def submit(self, template_name: str, arguments: dict[str, str] | None = None, uid: str | None = None) -> dict:
        wt = self.templates[template_name]
        spec = wt["spec"]
        params = {p["name"]: p.get("value") for p in spec.get("arguments", {}).get("parameters", [])}
        uid = uid or str(uuid.uuid4())
        scope = {"workflow.uid": uid, "workflow.name": f"{template_name}-{uid[:5]}"}
        params.update(arguments or {})
        for name, value in params.items():
            if value is None:
                raise KeyError(f"workflow parameter {name!r} has no value")
            scope[f"workflow.parameters.{name}"] = self.substitute(str(value), scope)
        return self._execute(spec, spec["entrypoint"], {}, scope)

    def _execute(self, spec: dict, name: str, inputs: dict, workflow_scope: dict) -> dict:
        template = next(t for t in spec["templates"] if t["name"] == name)
        scope = dict(workflow_scope)
        for declared in template.get("inputs", {}).get("parameters", []):
            if declared["name"] not in inputs:
                raise KeyError(f"template {name!r} needs input {declared['name']!r}")
            scope[f"inputs.parameters.{declared['name']}"] = inputs[declared["name"]]
        if "steps" in template:
            return self._steps(spec, template, scope)
        if "container" in template:
            if self.pods:
                return self._pod(spec, template, scope)
            return self._container(template, scope)
        raise ValueError(f"template {name!r}: unsupported kind")

    def _steps(self, spec: dict, template: dict, scope: dict) -> dict:
        for group in template["steps"]:
            for step in group:
                items = [None]
                if "withParam" in step:
                    items = json.loads(self.substitute(step["withParam"], scope))
                for item in items:
                    local = dict(scope)
                    if isinstance(item, dict):
                        local.update({f"item.{k}": v for k, v in item.items()})
                    elif item is not None:
                        local["item"] = item
                    # As Argo: `when` is evaluated per expanded item, with the item's fields.
                    if "when" in step and not self.evaluate(self.substitute(step["when"], local)):
                        continue
                    arguments = {p["name"]: self.substitute(str(p["value"]), local) for p in step.get("arguments", {}).get("parameters", [])}
                    outputs = self._execute(spec, step["template"], arguments, {k: v for k, v in scope.items() if k.startswith("workflow.")})
                    for key, value in outputs.items():
                        scope[f"steps.{step['name']}.outputs.parameters.{key}"] = value
        return {}

    def _container(self, template: dict, scope: dict) -> dict:
        container = template["container"]
        limit = int(template.get("retryStrategy", {}).get("limit", 0))
        expression = template.get("retryStrategy", {}).get("expression", "")
        with tempfile.TemporaryDirectory() as out:
            def local_path(path: str) -> str:
                return path.replace("/out", out, 1) if path.startswith("/out") else path
            command = [self.substitute(c, scope) for c in container["command"] + container.get("args", [])]
            assert command[0] == "/secops", f"unexpected entrypoint {command[0]}"
            env = {"PATH": "/usr/bin:/bin"}
            for variable in container.get("env", []):
                if "value" in variable:
                    env[variable["name"]] = local_path(self.substitute(variable["value"], scope))
            env.update(self.env)
            for attempt in range(limit + 1):
                result = subprocess.run([self.secops_bin, *command[1:]], env=env, capture_output=True, text=True, timeout=120)
                retry = result.returncode == 75 and "== 75" in expression
                if not retry:
                    break
            self.runs.append({"args": command[1:], "code": result.returncode, "stdout": result.stdout, "stderr": result.stderr})
            if result.returncode != 0:
                raise StepFailed(f"{' '.join(command)} exited {result.returncode}: {result.stdout.strip()} {result.stderr.strip()[-500:]}")
            outputs = {}
            for parameter in template.get("outputs", {}).get("parameters", []):
                path = Path(local_path(parameter["valueFrom"]["path"]))
                if not path.exists():
                    raise StepFailed(f"output {parameter['name']!r}: {parameter['valueFrom']['path']} was not written")
                outputs[parameter["name"]] = path.read_text().strip()
            return outputs

    def _pod(self, spec: dict, template: dict, scope: dict) -> dict:
        """One step as the pod Kubernetes would run: a new pod (tokens, volumes) per attempt."""
        pod_spec = workflow_pod(spec, template, template["name"]).spec
        container = pod_spec["containers"][0]
        limit = int(template.get("retryStrategy", {}).get("limit", 0))
        retries = "== 75" in template.get("retryStrategy", {}).get("expression", "")
        pod_name = f"{scope['workflow.name']}-{template['name']}-{uuid.uuid4().hex[:5]}"
        engine = self.engine or Binary(self.secops_bin)
        command = [self.substitute(c, scope) for c in container["command"]]
        args = [self.substitute(a, scope) for a in container.get("args", [])]
        for attempt in range(limit + 1):
            with tempfile.TemporaryDirectory() as root:
                try:
                    pod = self.pods.build(pod_spec, container, pod_name, Path(root), lambda text: self.substitute(text, scope))
                except PodRefused as refused:
                    raise StepFailed(f"{template['name']}: the pod is refused: {refused}") from None
                if self.on_step:
                    self.on_step(template["name"])
                process, env = engine.start(pod, command, args)
                code, stdout, stderr = self._wait(engine, process)
                outputs = {}
                for parameter in template.get("outputs", {}).get("parameters", []):
                    path = Path(pod.host_path(parameter["valueFrom"]["path"]))
                    if path.exists():
                        outputs[parameter["name"]] = path.read_text().strip()
            # A killed container exits 137: not 75, so Argo's expression does not retry it.
            if not (code == 75 and retries):
                break
        self.runs.append({"args": args, "code": code, "stdout": stdout, "stderr": stderr, "outputs": outputs, "env": env,
                          "template": template["name"], "mode": engine.mode})
        if code != 0:
            raise StepFailed(f"{' '.join(command + args)} exited {code}: {stdout.strip()} {stderr.strip()[-500:]}")
        for parameter in template.get("outputs", {}).get("parameters", []):
            if parameter["name"] not in outputs:
                raise StepFailed(f"output {parameter['name']!r}: {parameter['valueFrom']['path']} was not written")
        return outputs

    def _wait(self, engine, process, timeout: float = 120) -> tuple[int, str, str]:
        """The step's exit code and output; killed (as a node loss or an eviction kills a pod)
        when `interrupt` is set, or after `timeout` seconds."""
        out, err = [], []
        deadline = time.monotonic() + timeout
        while True:
            try:
                stdout, stderr = process.communicate(timeout=0.05)
                out.append(stdout or "")
                err.append(stderr or "")
                break
            except subprocess.TimeoutExpired:
                if (self.interrupt and self.interrupt.is_set()) or time.monotonic() > deadline:
                    engine.kill(process)
        code = process.returncode
        return (137 if code == -9 else code), "".join(out), "".join(err)

    # -- event sources -------------------------------------------------------------------
    @staticmethod
    def webhook_accepts(event_source: dict, event_name: str, headers: dict[str, str], cluster, namespace: str) -> bool:
        """Whether Argo Events' webhook server passes a request on: with `authSecret`, only
        one carrying `Authorization: Bearer <the Secret's key>`; without, every request."""
        webhook = event_source["spec"]["webhook"][event_name]
        auth = webhook.get("authSecret")
        if not auth:
            return True
        code, secret = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{auth['name']}")
        if code != 200 or auth["key"] not in secret.get("data", {}):
            return False  # the EventSource cannot start without it
        token = base64.b64decode(secret["data"][auth["key"]]).decode()
        return headers.get("Authorization") == f"Bearer {token}"

    # -- sensors -------------------------------------------------------------------------
    @staticmethod
    def fire(sensor: dict, dependency: str, event: dict) -> list[dict]:
        """The Workflow objects a Sensor would submit for one event (empty when filtered out)."""
        dep = next(d for d in sensor["spec"]["dependencies"] if d["name"] == dependency)
        for data_filter in (dep.get("filters") or {}).get("data", []):
            try:
                value = str(_dot_get(event["data"], data_filter["path"]))
            except (KeyError, IndexError, ValueError):
                return []
            if not any(re.search(pattern, value) for pattern in data_filter["value"]):
                return []
        workflows = []
        for trigger in sensor["spec"]["triggers"]:
            template = trigger["template"]
            conditions = template.get("conditions")
            if conditions and dependency not in re.split(r"[\s&|()]+", conditions):
                continue
            resource = copy.deepcopy(template["argoWorkflow"]["source"]["resource"])
            for parameter in template["argoWorkflow"].get("parameters", []):
                src = parameter["src"]
                if src["dependencyName"] != dependency:
                    continue
                value = event["context"][src["contextKey"]] if "contextKey" in src else _dot_get(event["data"], src["dataKey"])
                _dot_set(resource, parameter["dest"], value)
            workflows.append(resource)
        return workflows

    def run_workflow(self, workflow: dict) -> dict:
        spec = workflow["spec"]
        arguments = {p["name"]: p["value"] for p in spec.get("arguments", {}).get("parameters", [])}
        return self.submit(spec["workflowTemplateRef"]["name"], arguments)
