#!/usr/bin/env bash
# Set up (with test tools) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --test
exec .venv/bin/python -m pytest "$@"
