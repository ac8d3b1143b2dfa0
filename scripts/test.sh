#!/usr/bin/env bash
# `make test`: the whole suite as two pytest runs side by side. The tests on the test machines
# (marker `machines`, set in tests/conftest.py) mostly wait, for boots, VRRP adverts and
# etcd joins, so they run beside the rest instead of after it. Each run has its own
# temporary folder; the two never share a loopback address (the machines' traffic stays in
# their own network namespaces). The machines' output is printed after the other run's, and
# the exit code is the first failure of the two. Extra arguments go to both runs.
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
work=$(mktemp -d -t rke2ha-test.XXXXXX)
machines_log="$work/machines.log"

"$python" -m pytest -p no:cacheprovider --basetemp="$work/machines" -m machines "$@" \
    >"$machines_log" 2>&1 &
machines_pid=$!
# Ctrl-C or a CI timeout: stop the machines' run too (its fixtures tear the machines down).
trap 'kill -INT "$machines_pid" 2>/dev/null; wait "$machines_pid"; exit 130' INT TERM

echo "== tests on this machine (the tests on the test machines run beside them: $machines_log)"
"$python" -m pytest -p no:cacheprovider --basetemp="$work/local" -m "not machines" "$@"
local_code=$?

wait "$machines_pid"
machines_code=$?
trap - INT TERM
echo
echo "== tests on the test machines"
cat "$machines_log"
echo
echo "== make test: this machine exit $local_code, test machines exit $machines_code"
if [ "$local_code" -ne 0 ]; then exit "$local_code"; fi
exit "$machines_code"
