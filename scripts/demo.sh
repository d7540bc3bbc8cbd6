#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then create a demo store, mount it
# with corefs, write a few cores and print what to try.  Optional argument: a
# directory for the demo (default: a new temporary one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
