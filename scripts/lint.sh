#!/usr/bin/env bash
# The checks that keep the code in one shape: ruff (lint and format), mypy on src/, and the import
# contracts of .importlinter (the layers of docs/architecture.md). `make test` runs it before pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
"$BIN/ruff" check src tests bench scripts
"$BIN/ruff" format --check src tests bench scripts
"$BIN/mypy"
"$BIN/lint-imports" .importlinter
