#!/usr/bin/env bash
# Regenerates the seed corpora under tools/fuzz/seeds/ (or DIR) from the project's fixtures.
# Usage: bash tools/fuzz/make-seeds.sh [DIR]
set -euo pipefail
exec python3 "$(dirname "$0")/make_seeds.py" "$@"
