"""docs/gitops.md: every YAML block parses, and each carries the settings the page names for
its mode, spelled as Argo CD and Flux document them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "gitops.md"


def sections() -> dict[str, list[dict]]:
    """The YAML documents of each `## mode` section."""
    found: dict[str, list[dict]] = {}
    for section in re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0].strip("` ").split("`")[0]
        blocks = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.M | re.S)
        found[title] = [doc for block in blocks for doc in yaml.safe_load_all(block)]
    return found


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_every_block_is_a_kubernetes_object():
    docs = [d for ds in sections().values() for d in ds]
    # Every block of the page sits in a mode's section, one object each.
    assert len(docs) == DOC.read_text().count("```yaml") == 6
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
    for secret in by_kind(docs, "Secret"):
        assert secret["metadata"]["labels"]["secops.dev/class"] == "bootstrap"
        assert secret["metadata"]["annotations"]["secops.dev/vault-path"]


def test_each_mode_carries_its_settings():
    modes = sections()
    assert set(modes) == {"annotate", "strip", "delete"}

    annotate = modes["annotate"]
    app = by_kind(annotate, "Application")[0]
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "ignoreDifferences" not in app["spec"], "annotate needs nothing"
    flux = by_kind(annotate, "Kustomization")[0]
    assert flux["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert flux["spec"]["prune"] is True

    strip = modes["strip"]
    app = by_kind(strip, "Application")[0]
    (ignored,) = app["spec"]["ignoreDifferences"]
    assert (ignored["group"], ignored["kind"]) == ("", "Secret")
    assert ignored["jsonPointers"] == ["/data", "/stringData"]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    (secret,) = by_kind(strip, "Secret")
    assert secret["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/ssa"] == "IfNotPresent"

    delete = modes["delete"]
    argo, flux = by_kind(delete, "Secret")
    assert argo["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
    assert argo["metadata"]["annotations"]["argocd.argoproj.io/compare-options"] == "IgnoreExtraneous"
    assert flux["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
    assert "kustomize.toolkit.fluxcd.io/ssa" not in flux["metadata"]["annotations"], "IfNotPresent would re-create it"
