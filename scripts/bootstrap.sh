#!/usr/bin/env bash
# Installs what Lazarus needs, idempotently. Used by `make` (people and CI alike).
#   scripts/bootstrap.sh system   Debian packages from scripts/debian-packages.txt (root only;
#                                 without root it only says what is missing)
#   scripts/bootstrap.sh python   the virtualenv .venv with Lazarus and its test extras
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

system() {
  mapfile -t wanted < <(grep -v -E '^\s*(#|$)' scripts/debian-packages.txt)
  missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: not root; missing Debian packages: ${missing[*]} (tests that need them are skipped)"
    return 0
  fi
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  py=${PYTHON:-python3}
  stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
  [ -f "$stamp" ] && return 0
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  extras="test"
  if pkg-config --exists libvirt 2>/dev/null; then extras="$extras,libvirt,lab"; fi
  extras="$extras,postgres"
  echo "bootstrap: installing Lazarus into .venv with extras [$extras]"
  .venv/bin/pip install -q -e ".[$extras]"
  rm -f .venv/.installed-*
  touch "$stamp"
}

case "${1:-all}" in
  system) system ;;
  python) python_env ;;
  all) system; python_env ;;
  *) echo "usage: $0 [system|python|all]" >&2; exit 2 ;;
esac
