# Shared by scripts/test and scripts/serve: a project virtualenv with Regalia installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REGALIA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

# ensure_venv [test]: Regalia installed (editable) into $VENV with its runtime
# dependencies only, or with the test tools too. Each install leaves a stamp;
# it is redone when pyproject.toml is newer than the stamp. A test install
# serves scripts/serve as well (it is a superset).
ensure_venv() {
  local want="${1:-runtime}"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.regalia-installed-$want"
  local test_stamp="$VENV/.regalia-installed-test"
  if [ "$want" = runtime ] && [ -f "$test_stamp" ] && [ ! "$ROOT/pyproject.toml" -nt "$test_stamp" ]; then
    return 0
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    local spec="$ROOT" what="Regalia"
    if [ "$want" = test ]; then spec="$ROOT[test]" what="Regalia and its test tools"; fi
    echo "Installing $what into $VENV ..." >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
    touch "$stamp"
  fi
}

# Say how to reach the CLI when `regalia` on PATH is not this virtualenv's.
cli_hint() {
  if [ "$(command -v regalia 2>/dev/null || true)" != "$VENV/bin/regalia" ]; then
    echo "The regalia CLI is $VENV/bin/regalia; to run it as 'regalia':" >&2
    echo "  export PATH=\"$VENV/bin:\$PATH\"" >&2
  fi
}

ensure_postgres() {
  # The test suite needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres).
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; installing it from Debian's packages" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    if pg_isready -h 127.0.0.1 -p 5432 -q; then return 0; fi
    sleep 0.5
  done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  return 1
}

ensure_chromium() {
  # The web UI's browser tests drive Debian's Chromium through Playwright
  # (`playwright install` cannot download browsers here).
  if [ -x /usr/bin/chromium ]; then return 0; fi
  echo "Chromium is not installed; installing it from Debian's packages" >&2
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
}
