#!/usr/bin/env bash
# `make demo`: the whole HA topology on this machine (three RKE2 node emulators, the
# built-in load balancer and DNS server, a lab CA), verified by `rke2ha check`, then put
# through the failover drill. The lab keeps running afterwards; the last lines say how to
# reach it and how to stop it. Root uses the real ports; anyone else gets +lab.port_offset.
#
# One screen: each command writes its JSON to demo-out/ and scripts/demo_summary.py prints
# the verdicts, the drill and the next steps once (the full check table is one command
# away); a failure prints the command's own output instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
spec=${DEMO_SPEC:-examples/lab.yaml}  # tests run the demo on a spec of their own
out=${DEMO_OUT:-demo-out}
mkdir -p "$out"
started=$(date +%s%N)
summary() { "$bin/python" scripts/demo_summary.py "$@"; }

echo "== $bin/rke2ha up -f $spec --detach"
if ! "$bin/rke2ha" up -f "$spec" --detach --json >"$out/up.json" 2>"$out/up.log"; then
    # People's output (progress, failing checks, the error) went to the log.
    grep -v '^\s*$' "$out/up.log" | grep -v '│ PASS │' || true
    echo "The lab did not come up verified (output: $out/up.log)."
    exit 1
fi
grep -E '^(✓|✗) ' "$out/up.log" || true
summary up "$out/up.json"

echo
echo "== $bin/rke2ha check -f $spec --drill   (kill, then freeze one node under load)"
status=0
"$bin/rke2ha" check -f "$spec" --drill --json >"$out/check.json" 2>"$out/check.log" || status=$?
if [ ! -s "$out/check.json" ]; then
    cat "$out/check.log"
    exit "${status:-1}"
fi
summary drill "$out/check.json"

elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
echo
summary next "$out/up.json" "$(printf '%d.%03d' $((elapsed / 1000)) $((elapsed % 1000)))"
exit "$status"
