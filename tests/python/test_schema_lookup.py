"""scripts/test's Argo schema lookup (find_schemas in scripts/lib.sh, scripts/fetch-schemas),
run for real in a copy of the checkout with no ../shared beside it, as someone who cloned the
repository has it. Downloads come from a local server laid out like the upstream one, so the
sha256 check, the offline skip and the second (offline) run are all exercised here."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import secops_manifests as m
from conftest import free_port

ROOT = m.ROOT
FETCH = (ROOT / "scripts" / "fetch-schemas").read_text()
COMMITS = dict(re.findall(r"^(workflows|events)=([0-9a-f]{40})", FETCH, re.M))
# fetch REPO $COMMIT UPSTREAM-PATH LOCAL-PATH SHA256, as scripts/fetch-schemas lists them.
PINNED = [
    (repo, COMMITS[commit], upstream, local, sha)
    for repo, commit, upstream, local, sha in re.findall(r"^fetch (\S+) \$(\w+) (\S+) (\S+) ([0-9a-f]{64})$", FETCH, re.M)
]


def test_fetch_schemas_pins_every_file_the_tests_read():
    assert len(PINNED) == 5 and {local for *_, local, _ in PINNED} >= set(m.SCHEMA_FILES)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECOPS_")}
    return {**env, **extra}


@pytest.fixture
def clone(tmp_path) -> Path:
    """The checkout's tracked files (as they are in the working tree) in a fresh directory
    whose parent holds no shared/: a clone made anywhere."""
    dest = tmp_path / "ws" / "secops"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert not (dest.parent / "shared").exists()
    return dest


def lookup(clone: Path, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(clone / "scripts" / "test"), "--schema-dir"], cwd=clone, env=clean_env(**env), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


class Upstream:
    """A local stand-in for the upstream host: REPO/COMMIT/PATH, as fetch-schemas asks."""

    def __init__(self, root: Path):
        handler = functools.partial(QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def real_schemas() -> Path:
    source = m.schema_dir()
    if source is None:
        pytest.skip(m.schemas_missing())
    return source


def serve(tmp_path: Path, source: Path | None, tamper: str | None = None) -> Upstream:
    """Serves the files of `source` (the real schemas), with `tamper` altered; without a
    source (a clone with no schemas anywhere) every file is a stand-in that matches no pin."""
    site = tmp_path / "upstream"
    for repo, commit, upstream, local, _ in PINNED:
        target = site / repo / commit / upstream
        target.parent.mkdir(parents=True, exist_ok=True)
        if source is None:
            target.write_text("{}\n")
            continue
        shutil.copy2(source / local, target)
        if local == tamper:
            with target.open("a") as f:
                f.write("\n# not the pinned file\n")
    return Upstream(site)


def test_a_clone_without_shared_fetches_the_pinned_files_checked_then_reuses_them_offline(clone, tmp_path):
    upstream = serve(tmp_path, real_schemas())
    try:
        first = lookup(clone, SECOPS_SCHEMA_BASE_URL=upstream.url)
    finally:
        upstream.close()
    work = clone / ".work" / "schemas"
    assert first.stdout.strip() == f"schemas: {work}", first.stdout + first.stderr
    for *_, local, sha in PINNED:
        assert hashlib.sha256((work / local).read_bytes()).hexdigest() == sha
    # The second run needs no network: the files are there and still match.
    offline = lookup(clone, SECOPS_SCHEMA_BASE_URL=f"http://127.0.0.1:{free_port()}")
    assert offline.stdout.strip() == f"schemas: {work}", offline.stderr


def test_a_tampered_download_is_refused_and_not_installed(clone, tmp_path):
    source = m.schema_dir()
    upstream = serve(tmp_path, source, tamper="argo-events/schema.json")
    try:
        result = lookup(clone, SECOPS_SCHEMA_BASE_URL=upstream.url)
    finally:
        upstream.close()
    assert result.stdout.startswith("schemas: skip:"), result.stdout
    assert "sha256 mismatch" in result.stderr
    work = clone / ".work" / "schemas"
    assert not (work / "argo-events" / "schema.json").exists()
    if source is None:  # stand-ins only: the first file already failed, nothing was installed
        assert not work.exists() or not any(work.rglob("*.*"))


def test_offline_the_lookup_says_skip_and_names_the_fix(clone):
    result = lookup(clone, SECOPS_SCHEMA_BASE_URL=f"http://127.0.0.1:{free_port()}")
    assert result.stdout.startswith("schemas: skip:"), result.stdout
    assert "scripts/fetch-schemas" in result.stderr and "SECOPS_SCHEMA_DIR" in result.stderr
    assert not (clone / ".work" / "schemas").exists() or not any((clone / ".work" / "schemas").rglob("*.*"))


def test_shared_beside_the_clone_is_used_without_fetching(clone, tmp_path):
    shared = clone.parent / "shared" / "schemas"
    shared.mkdir(parents=True)
    result = lookup(clone, SECOPS_SCHEMA_BASE_URL=f"http://127.0.0.1:{free_port()}")
    assert result.stdout.strip() == f"schemas: {shared}"


def test_secops_schema_dir_wins_over_everything(clone, tmp_path):
    (clone.parent / "shared" / "schemas").mkdir(parents=True)
    mine = tmp_path / "mine"
    assert lookup(clone, SECOPS_SCHEMA_DIR=str(mine)).stdout.strip() == f"schemas: {mine}"


def test_without_schemas_the_manifest_checks_skip_visibly(clone):
    """pytest in the clone, as scripts/test runs it offline: the schema checks skip, and the
    summary names the reason and the fix."""
    env = clean_env(SECOPS_SCHEMAS_MISSING="no Argo schemas (offline)")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/python/test_manifests.py", "-k", "project_checks or each_check_can_fail"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b2 passed, 5 skipped\b", result.stdout), result.stdout
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 2 and all("scripts/fetch-schemas" in s and "SECOPS_SCHEMA_DIR" in s and "offline" in s for s in skips), result.stdout
