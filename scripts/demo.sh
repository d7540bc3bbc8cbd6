#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
