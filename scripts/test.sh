#!/usr/bin/env bash
# Set up a fresh virtual environment and run the whole test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
venv="${VENV:-.venv}"
[[ -x "$venv/bin/python" ]] || python3.11 -m venv "$venv"
PYTHON="$venv/bin/python" bash docker/install.sh cpu --editable --extras test
"$venv/bin/python" -m pytest "$@"
