#!/usr/bin/env bash
# Installs what corefs needs on a fresh Debian machine (as root), idempotently:
# apt packages, a .venv with the project, and the reference (npm, pinned) for
# interop tests and benchmarks in tests/interop/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in fuse3 libfuse3-dev pkg-config attr rsync; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import spacecorestore, pytest, pytest_trio, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: pip install -e .[test]"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi

if command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/interop/node_modules/hypercore ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules/.package-lock.json ]; then
    echo "setup: npm ci (reference hypercore/corestore, pinned) in tests/interop"
    (cd tests/interop && npm ci --silent --no-audit --no-fund)
  fi
else
  echo "setup: npm not found; interop tests will be skipped" >&2
fi
