#!/bin/sh
# Stand-in for RKE2's bin/rke2-killall.sh: stop the rke2 units, then kill what they left.
# The real unit has KillMode=process, so the processes rke2 started outlive a stop; here that
# is the etcd the stand-in runs (the real one kills the containerd shims and pods).
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
for unit in rke2-server rke2-agent; do
    systemctl stop "${unit}" >/dev/null 2>&1 || true
done
# `rke2` is a python3 script here, so its command line starts with the interpreter.
pkill -9 -f '/usr/local/bin/rke2 server' 2>/dev/null || true
pkill -9 -f '^/usr/bin/etcd --name=' 2>/dev/null || true
exit 0
