#!/usr/bin/env bash
# `make demo`: until the lab lands, validate the lab spec and render every engine's config.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
echo "== rke2ha validate -f examples/lab.yaml"
$bin/rke2ha validate -f examples/lab.yaml
echo
echo "== rke2ha render -f examples/lab.yaml -o demo-out"
$bin/rke2ha render -f examples/lab.yaml -o demo-out
