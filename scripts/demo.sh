#!/usr/bin/env bash
# `make demo`: the whole HA topology on this machine (three RKE2 node emulators, the
# built-in load balancer and DNS server, a lab CA), verified by `rke2ha check`, then put
# through the failover drill. The lab keeps running afterwards; the last lines say how to
# reach it and how to stop it. Root uses the real ports; anyone else gets +lab.port_offset.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
spec=examples/lab.yaml
started=$(date +%s%N)

echo "== rke2ha up -f $spec --detach"
if ! $bin/rke2ha up -f "$spec" --detach; then
    echo
    echo "The lab did not come up verified. Logs: .rke2ha/lab/*/logs/ beside $spec"
    echo "Stop what started: $bin/rke2ha down -f $spec"
    exit 1
fi

echo
echo "== rke2ha check -f $spec --drill   (kill, then freeze one node under load)"
status=0
$bin/rke2ha check -f "$spec" --drill || status=$?

elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
echo
echo "== the lab is running ($(printf '%d.%03d' $((elapsed / 1000)) $((elapsed % 1000)))s for up + check + drill)"
$bin/rke2ha lab status -f "$spec" || true
echo
echo "Inject failures:  $bin/rke2ha lab kill|freeze|thaw|restart|join node-2 -f $spec"
echo "Check again:      $bin/rke2ha check -f $spec"
exit "$status"
