"""docs/runbook.md works as printed: every command in a fenced block, and every inline code span
that starts with a program name, is taken apart like a shell would and checked against the real
tool. `secops` runs with the real binary against an unreachable Vault and API server: a usage
error exits 2 before anything connects (`Cli::validate`), so exit 75 proves the flags and their
values were accepted. `bao` and `kubectl` run the same way and must fail on the connection,
not on their flags, and the chart's objects they name (ConfigMaps, pod labels, containers)
must be rendered. `argo` is not installed: its subcommands and flags come from a short list
and the templates it names must exist in the rendered chart. `jq` filters must compile.

Then the flows themselves, against OpenBao and the emulator, each step the runbook's own line
run by a shell: the cluster loss of section 1 (re-adopted, stale, retired, and the one case
that needs a human) and a second cluster's Vault side of section 2."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, bin_dir, manifests

RUNBOOK = ROOT / "docs" / "runbook.md"
UNREACHABLE = "http://127.0.0.1:9"
CHECKED = ("secops", "bao", "kubectl", "argo", "jq")
# Run, but nothing to hold them to beyond exit 0.
PLAIN = ("mkdir", "openssl")
# Words that stand for a name the reader must fill in: the runbook uses example names instead.
PLACEHOLDER = re.compile(r"(?<![\w$.{-])(NS|NAME|PATH|ID|MOUNT|ROLE|CLUSTER|UID|WORKFLOW|POD|JOB|TOKEN|KEY)(?![\w-])")
KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- name: unreachable
  cluster: {{server: "{UNREACHABLE}"}}
users:
- name: unreachable
  user: {{token: not-a-token}}
contexts:
- name: unreachable
  context: {{cluster: unreachable, user: unreachable, namespace: default}}
current-context: unreachable
"""
# The argo CLI's commands and flags this page may use (argo_submit, argo_get in the Argo
# Workflows CLI reference), with whether each flag takes a value.
ARGO_GLOBAL = {"-n": True, "--namespace": True}
ARGO = {
    "submit": {"--from": True, "--watch": False, "-w": False, "--log": False, "-p": True, "-o": True},
    "get": {"-o": True},
}
ARGO_OUTPUTS = {"json", "yaml", "wide", "name"}


def documented_commands(text: str) -> list[str]:
    """Command lines of the fenced blocks (backslash continuations joined, comments dropped),
    then the inline code spans of the prose that start with a program name."""
    found = []
    for block in re.findall(r"^\s*```[a-z]*\n(.*?)^\s*```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    prose = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.split(" ", 1)[0] in CHECKED and " " in span:
            found.append(span)
    return found


def simple_commands(line: str) -> list[tuple[list[str], dict[str, str]]]:
    """The simple commands of one line: command substitutions first (checked as commands of
    their own, then stood in for by a word), pipelines and lists split, redirections and
    leading assignments taken off. Each is (argv, assignments)."""
    result = []
    for inner in re.findall(r"\$\(([^()]*)\)", line):
        result.extend(simple_commands(inner))
    line = re.sub(r"\$\([^()]*\)", "substituted", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    segment: list[str] = []
    for token in tokens + [";"]:
        if token in ("|", "||", "&&", ";"):
            argv, env, skip = [], {}, False
            for i, word in enumerate(segment):
                if skip:
                    skip = False
                elif word in (">", ">>", "<"):
                    skip = True
                elif not argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
                    key, value = word.split("=", 1)
                    env[key] = value
                elif not argv and word == "export":
                    continue
                else:
                    argv.append(word)
            if argv:
                result.append((argv, env))
            segment = []
        else:
            segment.append(token)
    return result


def runbook_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    return [(line, argv, env) for line in documented_commands(RUNBOOK.read_text()) for argv, env in simple_commands(line)]


COMMANDS = runbook_commands()


def ids(program: str) -> list:
    return [pytest.param(line, argv, env, id=" ".join(argv)[:90]) for line, argv, env in COMMANDS if argv[0] == program]


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    """The chart as workflows/ renders it, plus the vault-setup hook Job."""
    return manifests.documents(manifests.render({**manifests.workflow_values(), "vaultSetup": {"hook": True}}))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The directory the commands run in, with a kubeconfig naming an unreachable API server."""
    work = tmp_path_factory.mktemp("runbook")
    (work / "kubeconfig").write_text(KUBECONFIG)
    return work


def unreachable_env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    """Nothing of the caller's environment but PATH: a stray SECOPS_* or VAULT_* would change
    what is checked."""
    return {
        "PATH": f"{bin_dir()}:{ROOT / '.work' / 'venv' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(work), "VAULT_ADDR": UNREACHABLE, "VAULT_TOKEN": "not-a-token",
        "KUBECONFIG": str(work / "kubeconfig"), "SECOPS_MAX_ATTEMPTS": "1", **extra,
    }


def run(argv: list[str], work: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=work, env=unreachable_env(work, env), input=stdin, capture_output=True, text=True, timeout=60)


def test_the_runbook_has_commands_of_every_kind():
    programs = {argv[0] for _, argv, _ in COMMANDS}
    assert set(CHECKED) <= programs, programs
    secops = {argv[1] for _, argv, _ in COMMANDS if argv[0] == "secops"}
    assert {"status", "read-bootstrap", "handover", "rotate", "vault-setup"} <= secops, secops


def test_every_command_uses_a_known_program_and_example_names():
    problems = []
    for line, argv, _ in COMMANDS:
        if argv[0] not in CHECKED + PLAIN:
            problems.append(f"{line!r}: {argv[0]!r} is not a program this test can check")
        if "..." in line:
            problems.append(f"{line!r}: an elided command does not work as printed")
        if match := PLACEHOLDER.search(line):
            problems.append(f"{line!r}: {match.group(0)!r} is a placeholder; use the runbook's example names")
    assert not problems, "\n".join(problems)


def test_the_flows_are_covered():
    text = RUNBOOK.read_text()
    for term in (
        "readopted", "secops.dev/state=stale", "`Stale`", "retired", "claim-takeover", "data with no secops provenance",
        "--cluster-name", "SECOPS_CLUSTER", "clusterName", "{cluster}", "--other-clusters",
        "not-stripped", "drifted", "docs/gitops.md",
        '"audit":true', "--audit-file", "SECOPS_AUDIT_FILE", "§4",
        "unseal_keys_b64", "docs/security.md",
    ):
        assert term in text, f"docs/runbook.md does not mention {term!r}"


@pytest.mark.parametrize("line,argv,env", ids("secops"))
def test_secops_commands_parse(line, argv, env, workdir):
    """Exit 75 (Vault or the API server unreachable) means clap and `Cli::validate` accepted
    the command: a usage error exits 2 before anything connects."""
    done = run([str(bin_dir() / "secops"), *argv[1:]], workdir, env)
    assert done.returncode == 75, f"{line!r} exited {done.returncode}, not 75 (temporary):\n{done.stderr[-1500:]}"
    last = json.loads(done.stderr.strip().splitlines()[-1])
    assert last["exit_code"] == 75 and "cannot reach" in last["error"], last


@pytest.mark.parametrize("line,argv,env", ids("bao"))
def test_bao_commands_parse(line, argv, env, workdir):
    """OpenBao's CLI parses flags and arguments before its first request: a command that got as
    far as connecting was accepted. Data read from stdin (`-`) gets a JSON object."""
    done = run(argv, workdir, env, stdin='{"example": "value"}\n')
    assert "connection refused" in done.stderr, f"{line!r} exited {done.returncode} before connecting:\n{done.stderr[-1500:]}"


@pytest.mark.parametrize("line,argv,env", ids("kubectl"))
def test_kubectl_commands_parse(line, argv, env, workdir):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (scripts/test installs Debian's kubernetes-client)")
    done = run(argv, workdir, env)
    assert "connection refused" in done.stderr.lower(), f"{line!r} exited {done.returncode} before connecting:\n{done.stderr[-1500:]}"


def pod_templates(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return [spec["template"]] if doc["kind"] in ("CronJob", "Job") else []


@pytest.mark.parametrize("line,argv,env", ids("kubectl"))
def test_kubectl_commands_name_rendered_objects(line, argv, env, rendered):
    """The chart's objects a kubectl line names exist as printed: ConfigMaps by name, the
    webhook token Secret by the chart's default, and logs by a pod label and container the
    chart's pods carry (Argo's own pods: label workflows.argoproj.io/workflow, container main)."""
    words = argv[1:]
    if words[:2] == ["create", "clusterrolebinding"]:
        accounts = {f"{manifests.RELEASE['namespace']}:{d['metadata']['name']}" for d in rendered if d["kind"] == "ServiceAccount"}
        named = [w.split("=", 1)[1] for w in words if w.startswith("--serviceaccount=")]
        assert named and set(named) <= accounts, f"{line!r}: the chart renders the ServiceAccounts {sorted(accounts)}"
        return
    namespace = words[words.index("-n") + 1] if "-n" in words else None
    if namespace != manifests.RELEASE["namespace"]:
        return  # a managed namespace's objects: the example names of the runbook
    if words[2:4] in (["get", "cm"], ["get", "configmap"]):
        assert ("ConfigMap", words[4]) in {(d["kind"], d["metadata"]["name"]) for d in rendered}, line
    elif words[2:5] == ["create", "secret", "generic"]:
        auth = yaml.safe_load((manifests.CHART / "values.yaml").read_text())["events"]["webhook"]["authSecret"]
        assert words[5] == auth["name"] and f"--from-literal={auth['key']}=substituted" in words, line
    elif words[2] == "logs":
        selector, container = words[words.index("-l") + 1], words[words.index("-c") + 1]
        if selector == "workflows.argoproj.io/workflow":
            assert container == "main", line
            return
        key, _, value = selector.partition("=")
        pods = [p for d in rendered for p in pod_templates(d) if p["metadata"]["labels"].get(key) == value]
        assert pods, f"{line!r}: no pod of the chart is labelled {selector}"
        assert all(container in [c["name"] for c in p["spec"]["containers"]] for p in pods), f"{line!r}: container {container}"
    else:
        pytest.fail(f"{line!r}: this test does not know what that command names in the chart")


@pytest.mark.parametrize("line,argv,env", ids("argo"))
def test_argo_commands_name_rendered_templates(line, argv, env, workflow_docs):
    names = {(d["kind"], d["metadata"]["name"]) for d in workflow_docs}
    words, command, flags = argv[1:], None, dict(ARGO_GLOBAL)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            flag, _, inline = word.partition("=")
            assert flag in flags, f"{line!r}: argo {command or ''} has no flag {flag} in this test's list"
            value = (inline or words[i + 1]) if flags[flag] else None
            i += 1 if inline or not flags[flag] else 2
            if flag in ("-n", "--namespace"):
                assert value == manifests.RELEASE["namespace"], f"{line!r}: the chart is installed in {manifests.RELEASE['namespace']}"
            if flag in ("-o", "--output"):
                assert value in ARGO_OUTPUTS, line
            if flag == "--from":
                kind, _, name = value.partition("/")
                wanted = {"workflowtemplate": "WorkflowTemplate", "cronwf": "CronWorkflow"}.get(kind)
                assert (wanted, name) in names, f"{line!r}: the chart renders no {wanted or kind} {name!r}"
            continue
        if command is None:
            assert word in ARGO, f"{line!r}: argo {word} is not a command this page may use"
            command, flags = word, {**ARGO_GLOBAL, **ARGO[word]}
        else:
            assert command == "get" and (word == "@latest" or word.startswith("secops-")), f"{line!r}: unexpected argument {word!r}"
        i += 1
    assert command is not None, line
    assert "-n" in argv or "--namespace" in argv, f"{line!r}: name the chart's namespace, not the kubeconfig's"


@pytest.mark.parametrize("line,argv,env", ids("jq"))
def test_jq_filters_compile(line, argv, env, workdir):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    options = [w for w in argv[1:] if w.startswith("-")]
    program = next(w for w in argv[1:] if not w.startswith("-"))
    done = run(["jq", "-n", *options, program], workdir, env)
    assert done.returncode != 3 and "compile error" not in done.stderr, f"{line!r}: {done.stderr}"


@pytest.mark.parametrize("line,argv,env", ids("mkdir") + ids("openssl"))
def test_plain_commands_run(line, argv, env, workdir):
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    done = run(argv, workdir, env)
    assert done.returncode == 0, f"{line!r}: {done.stderr}"


def printed(line: str) -> str:
    """The runbook's command line that starts with `line` (exactly `line` when one is)."""
    lines = documented_commands(RUNBOOK.read_text())
    found = [l for l in lines if l == line] or [l for l in lines if l.startswith(line)]
    assert found, f"docs/runbook.md no longer prints {line!r}"
    return found[0]


def shell_in(services, work: Path):
    env = {**os.environ, **services["env"], "HOME": str(work), "PATH": f"{bin_dir()}:{ROOT / '.work' / 'venv' / 'bin'}:{os.environ['PATH']}"}

    def shell(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=120)

    return shell


def fresh_postgres(cluster, shell):
    """No Secret payments/postgres, nothing at its Vault path, no claim on it."""
    cluster.namespace("payments")
    cluster.request("DELETE", "/api/v1/namespaces/payments/secrets/postgres")
    for path in ("secret/payments/postgres", "secret/secops/claims/payments/postgres"):
        assert shell(f"bao kv metadata delete {path}").returncode == 0


def recreate_postgres(cluster, value: str, shell=None) -> str:
    """GitOps re-creates the Secret from Git: same name, a new uid. With `shell`, the path's
    claim is first backdated past `--path-claim-lease`, as it is when a cluster is lost long
    after the handover (a younger claim of the deleted uid is waited for: exit 75)."""
    if shell is not None:
        patched = shell("bao kv patch secret/secops/claims/payments/postgres claimed_at=1")
        assert patched.returncode == 0, patched.stdout + patched.stderr
    cluster.request("DELETE", "/api/v1/namespaces/payments/secrets/postgres")
    cluster.bootstrap("payments", "postgres", "payments/postgres", value)
    return cluster.secret("payments", "postgres")["metadata"]["uid"]


def test_cluster_loss_flow_as_printed(services, tmp_path):
    """Section 1 against OpenBao and the emulator, each step the runbook's own line run by a
    shell: handed over; the cluster is lost and the Secret re-created with the same data
    (`recreated`, then re-adopted with no Vault write: its claim taken over first, both in the
    audit file); re-created again with other data (`stale`, labelled, naming both uids); its
    value restored in Git (re-adopted, the stale marking gone); stale again and removed
    (`retired`, no violation)."""
    cluster, vault = services["cluster"], services["vault"]
    shell = shell_in(services, tmp_path)
    fresh_postgres(cluster, shell)
    cluster.bootstrap("payments", "postgres", "payments/postgres", "value-from-git")
    first = cluster.secret("payments", "postgres")["metadata"]["uid"]
    handover = shell(printed("secops handover -n payments"))
    assert handover.returncode == 0, handover.stdout + handover.stderr
    assert vault.current_version("secret", "payments/postgres") == 1

    second = recreate_postgres(cluster, "value-from-git", shell)
    status = shell(printed("secops status -n payments --output table"))
    assert status.returncode == 3 and "recreated" in status.stdout, status.stdout
    readopt = shell(printed("secops handover -n payments --audit-file"))
    assert readopt.returncode == 0, readopt.stdout + readopt.stderr
    assert json.loads(readopt.stdout)["items"][0]["outcome"] == "consumed"
    assert vault.current_version("secret", "payments/postgres") == 1, "no Vault write"
    if shutil.which("jq"):
        audit = shell(printed("jq -c 'select(.action ==")).stdout.splitlines()
    else:  # the same selection, where jq is not installed
        audit = [l for l in (tmp_path / "secops-audit.jsonl").read_text().splitlines() if json.loads(l)["action"] in ("claim-takeover", "handover-readopt")]
    assert [json.loads(l)["action"] for l in audit] == ["claim-takeover", "handover-readopt"], audit
    # The emulator serves no field selectors on Events: the Event the runbook's line selects.
    printed("kubectl -n payments get events --field-selector involvedObject.name=postgres,reason=Readopted")
    _, events = cluster.request("GET", "/api/v1/namespaces/payments/events")
    assert [e for e in events["items"] if e["reason"] == "Readopted" and e["involvedObject"]["name"] == "postgres"], events
    metadata = shell(printed("bao kv metadata get secret/payments/postgres"))
    assert second in metadata.stdout and first in metadata.stdout, metadata.stdout  # origin uid, previous uids

    third = recreate_postgres(cluster, "changed-in-git", shell)
    stale = shell(printed("secops handover -n payments"))
    assert stale.returncode == 3 and json.loads(stale.stdout)["items"][0]["error"]["kind"] == "stale", stale.stdout
    listed = shell(printed("kubectl get secrets -A -l secops.dev/state=stale"))
    assert "postgres" in listed.stdout, listed.stdout + listed.stderr
    uids = shell(printed("kubectl -n payments get secret postgres -o jsonpath="))
    assert uids.stdout.split() == [third, second], uids.stdout
    status = shell(printed("secops status -n payments --output table"))
    assert status.returncode == 3 and "stale" in status.stdout, status.stdout

    # Git's value was meant to be the handed-over one after all: restored, it is re-adopted.
    code, body = cluster.request("PATCH", "/api/v1/namespaces/payments/secrets/postgres",
                                 {"data": {"value": base64.b64encode(b"value-from-git").decode()}}, "application/merge-patch+json")
    assert code == 200, body
    restored = shell(printed("secops handover -n payments"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    marked = cluster.secret("payments", "postgres")["metadata"]
    assert marked["labels"]["secops.dev/state"] == "consumed" and "secops.dev/stale-at" not in marked["annotations"], marked

    # Or it is retired: stale again, then removed.
    recreate_postgres(cluster, "changed-in-git", shell)
    assert shell(printed("secops handover -n payments")).returncode == 3
    retire = shell(printed("kubectl -n payments delete secret postgres"))
    assert retire.returncode == 0, retire.stderr
    status = shell(printed("secops status -n payments --output table"))
    assert status.returncode == 0 and "retired" in status.stdout, status.stdout
    assert vault.current_version("secret", "payments/postgres") == 1


def test_the_case_that_needs_a_human_as_printed(services, tmp_path):
    """An interrupted handover had claimed the path and written its data, not the provenance;
    the re-created Secret holds other data: `not-owned`, "data with no secops provenance".
    The runbook's repair (delete the path, re-run) hands the new data over."""
    cluster, vault = services["cluster"], services["vault"]
    shell = shell_in(services, tmp_path)
    fresh_postgres(cluster, shell)
    cluster.bootstrap("payments", "postgres", "payments/postgres", "value-before-the-loss")
    old = cluster.secret("payments", "postgres")["metadata"]["uid"]
    # What the interrupted run left: its claim, then the data write, no provenance.
    interrupted = (
        f"bao kv put -cas=0 secret/secops/claims/payments/postgres origin=bootstrap:payments/postgres uid={old} claimed_at=1"
        " && bao kv put -cas=0 secret/payments/postgres value=value-before-the-loss"
    )
    assert shell(interrupted).returncode == 0
    recreate_postgres(cluster, "value-after-the-loss")

    refused = shell(printed("secops handover -n payments"))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    error = json.loads(refused.stdout)["items"][0]["error"]
    assert error["kind"] == "not-owned" and "data with no secops provenance" in error["message"], error

    assert shell(printed("bao kv metadata delete secret/payments/postgres")).returncode == 0
    repaired = shell(printed("secops handover -n payments"))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert json.loads(repaired.stdout)["items"][0]["outcome"] == "consumed"
    assert vault.get("secret/data/payments/postgres")["data"] == {"value": "value-after-the-loss"}


def json_documents(text: str) -> list[dict]:
    """The JSON documents one after another on a stdout (one per command run)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        doc, end = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
        docs.append(doc)
        at = end
    return docs


def test_the_vault_side_of_a_second_cluster_as_printed(services, tmp_path):
    """Section 2's Vault side for `cluster-b`, each step the runbook's own lines, in a cluster of
    its own (an emulator started here) sharing the session's OpenBao: its bootstrap policy and
    role under its own names, then `vault-setup` with a token of that policy only writes the
    cluster's own policies and roles; the unnamed cluster's policies are left alone."""
    from conftest import Cluster

    emulator = subprocess.Popen([str(bin_dir() / "kube-emulator"), "--write-kubeconfig", str(tmp_path / "kubeconfig")], stdout=subprocess.PIPE, text=True)
    try:
        url = emulator.stdout.readline().strip()
        token = yaml.safe_load((tmp_path / "kubeconfig").read_text())["users"][0]["user"]["token"]
        cluster_b = Cluster(url, token)
        cluster_b.namespace("secops")
        values = {"clusterName": "cluster-b", "vault": {"authMount": "kubernetes-cluster-b"}}
        for doc in manifests.documents(manifests.render(values)):
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] in ("secops-vault-policies", "secops-vault-setup"):
                code, body = cluster_b.request("POST", "/api/v1/namespaces/secops/configmaps", {**doc, "metadata": {**doc["metadata"], "namespace": "secops"}})
                assert code == 201, body
        shell = shell_in({**services, "env": {**services["env"], "KUBECONFIG": str(tmp_path / "kubeconfig")}}, tmp_path)
        enabled = shell("bao auth enable -path=kubernetes-cluster-b kubernetes")
        assert enabled.returncode == 0 or "path is already in use" in enabled.stderr, enabled.stderr
        unnamed = shell("bao policy list").stdout

        lines = documented_commands(RUNBOOK.read_text())
        start = lines.index(printed("kubectl -n secops get cm secops-vault-setup -o jsonpath='{.data.vault-setup\\.hcl}' | bao policy write secops-cluster-b-vault-setup -"))
        block = lines[start:start + 5]
        assert block[-1] == "secops vault-setup --from-configmap secops/secops-vault-policies", block
        done = shell("set -eo pipefail\n" + "\n".join(block))
        assert done.returncode == 0, done.stdout + done.stderr
        # bao's own lines ("Success! ...") come first, then secops's two documents.
        dry, result = json_documents(done.stdout[done.stdout.index("{"):])
        assert {(i["kind"], i["outcome"]) for i in dry["items"]} == {("policy", "planned"), ("role", "planned")}, dry
        applied = {(i["kind"], i["path"]) for i in result["items"] if i["outcome"] == "applied"}
        policies = {p for kind, p in applied if kind == "policy"}
        assert policies == {f"sys/policies/acl/secops-cluster-b-{r}" for r in ("handover", "push", "rotate", "status")}, result
        assert len(applied) == 8, result
        role = json.loads(shell("bao read -format=json auth/kubernetes-cluster-b/role/secops-handover").stdout)["data"]
        assert role["token_policies"] == ["secops-cluster-b-handover"] and role["bound_service_account_names"] == ["secops-handover"], role
        setup = json.loads(shell("bao read -format=json auth/kubernetes-cluster-b/role/secops-vault-setup").stdout)["data"]
        assert setup["token_policies"] == ["secops-cluster-b-vault-setup"], setup
        after = shell("bao policy list").stdout.split()
        assert set(unnamed.split()) <= set(after), "another cluster's policies are not this cluster's to remove"
        for name in ("secops-handover", "secops-status"):
            if name in unnamed.split():
                assert "cluster-b" not in shell(f"bao policy read {name}").stdout, f"{name} is the unnamed cluster's"
    finally:
        emulator.kill()
        emulator.wait()


def test_gitops_that_fights_back_as_printed(services, tmp_path):
    """Section 3 with `strip`: a sync refills the tombstone (`not-stripped`), the printed
    handover strips it again without a Vault write; a sync with another value is `drifted`,
    a rotation makes the new value in Vault, and removing the Secret from Git retires it."""
    cluster, vault = services["cluster"], services["vault"]
    shell = shell_in(services, tmp_path)
    fresh_postgres(cluster, shell)
    git = {"password": base64.b64encode(b"value-in-git").decode()}
    cluster.create({
        "apiVersion": "v1", "kind": "Secret", "data": git,
        "metadata": {"name": "postgres", "namespace": "payments", "labels": {"secops.dev/class": "bootstrap"},
                     "annotations": {"secops.dev/vault-path": "payments/postgres"}},
    })
    strip = printed("secops handover -n payments --mode strip")
    assert shell(strip).returncode == 0
    assert not cluster.secret("payments", "postgres").get("data")

    def sync(data: dict):
        code, body = cluster.request("PATCH", "/api/v1/namespaces/payments/secrets/postgres", {"data": data}, "application/merge-patch+json")
        assert code == 200, body

    sync(git)
    status = shell(printed("secops status -n payments --output table"))
    assert status.returncode == 3 and "not-stripped" in status.stdout, status.stdout
    again = shell(strip)
    assert again.returncode == 0 and json.loads(again.stdout)["items"][0]["outcome"] == "consumed", again.stdout
    assert not cluster.secret("payments", "postgres").get("data")
    assert vault.current_version("secret", "payments/postgres") == 1, "stripped again, no Vault write"

    sync({"password": base64.b64encode(b"changed-in-git").decode()})
    status = shell(printed("secops status -n payments --output table"))
    assert status.returncode == 3 and "drifted" in status.stdout, status.stdout
    rotated = shell(printed("secops rotate --path payments/postgres --key password --generator password --rotation-id manual-payments-postgres-1"))
    assert rotated.returncode == 0 and json.loads(rotated.stdout)["outcome"] == "rotated", rotated.stdout + rotated.stderr
    assert vault.current_version("secret", "payments/postgres") == 2
    assert vault.get("secret/data/payments/postgres")["data"]["password"] != "changed-in-git"

    assert shell(printed("kubectl -n payments delete secret postgres")).returncode == 0
    status = shell(printed("secops status -n payments --output table"))
    assert status.returncode == 0 and "rotated 1 time" in status.stdout, status.stdout  # retired, and rotated since


def test_vault_init_material_is_refused_as_printed(services, tmp_path):
    """Section 5: `bao operator init -format=json` saved whole in a bootstrap Secret is refused
    by the printed dry run, naming why, and nothing is written."""
    cluster, vault = services["cluster"], services["vault"]
    shell = shell_in(services, tmp_path)
    cluster.namespace("payments")
    init = json.dumps({"unseal_keys_b64": ["a2V5"], "root_token": "s.example"})
    cluster.create({
        "apiVersion": "v1", "kind": "Secret", "data": {"init.json": base64.b64encode(init.encode()).decode()},
        "metadata": {"name": "vault-init", "namespace": "payments", "labels": {"secops.dev/class": "bootstrap"},
                     "annotations": {"secops.dev/vault-path": "payments/vault-init"}},
    })
    try:
        done = shell(printed("secops handover -n payments --dry-run"))
        assert done.returncode == 3, done.stdout + done.stderr
        item = next(i for i in json.loads(done.stdout)["items"] if i["name"] == "vault-init")
        assert item["exit_code"] == 3 and item["error"]["kind"] == "refused", item
        assert "it holds Vault init material" in item["error"]["message"], item
        assert vault.get("secret/metadata/payments/vault-init") is None
    finally:
        cluster.request("DELETE", "/api/v1/namespaces/payments/secrets/vault-init")
