#!/bin/sh
# Stand-in for RKE2's bin/rke2-uninstall.sh (tar install). What it removes follows
# rancher/rke2 bundle/bin/rke2-uninstall.sh: run rke2-killall.sh, disable and reset the units,
# delete the units under <root>/lib/systemd/system and /etc/systemd/system,
# <root>/bin/rke2{,-killall.sh,-uninstall.sh}, <root>/share/rke2, /etc/rancher/rke2 and the
# data dir /var/lib/rancher/rke2 (then /etc/rancher and /var/lib/rancher when empty).
set -e
[ "$(id -u)" -eq 0 ] || { echo "$(basename "$0"): must be run as root" >&2; exit 1; }
ROOT="${INSTALL_RKE2_ROOT:-/usr/local}"
DATA_DIR="${RKE2_DATA_DIR:-/var/lib/rancher/rke2}"

killall_script="$(dirname "$0")/rke2-killall.sh"
[ -x "${killall_script}" ] && "${killall_script}"

if command -v systemctl >/dev/null 2>&1; then
    systemctl disable rke2-server >/dev/null 2>&1 || true
    systemctl reset-failed rke2-server >/dev/null 2>&1 || true
fi
find "${ROOT}/lib/systemd/system" /etc/systemd/system -name 'rke2-*.service' -type f \
    -delete 2>/dev/null || true
find "${ROOT}/lib/systemd/system" -name 'rke2-*.env' -type f -delete 2>/dev/null || true
rm -f -- "${ROOT}/bin/rke2" "${ROOT}/bin/rke2-killall.sh"
rm -rf -- "${ROOT}/share/rke2" /etc/rancher/rke2 "${DATA_DIR}"
rm -d /etc/rancher 2>/dev/null || true
rm -d /var/lib/rancher 2>/dev/null || true
command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload
rm -f -- "${ROOT}/bin/rke2-uninstall.sh"
echo "Cleanup completed successfully"
