#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks run for real (HAProxy, nginx with
# its stream module, BIND, dig, wrk, curl, zsh; debootstrap, systemd-nspawn and OpenSSH for
# the test machines of tests/support/machines), only when something is missing.
# As root it uses apt-get; otherwise it says what to install and exits 1.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have haproxy || need+=(haproxy)
have nginx || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
have named || need+=(bind9)
have named-checkzone || need+=(bind9-utils)
have dig || need+=(bind9-dnsutils)
have nsupdate || need+=(bind9-dnsutils)
have wrk || need+=(wrk)
have curl || need+=(curl)
have ip || need+=(iproute2)
have dnsperf || need+=(dnsperf)
have keepalived || need+=(keepalived)
have zsh || need+=(zsh)  # the completion tests load the zsh script in a real zsh
have debootstrap || need+=(debootstrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
have systemd-nspawn || need+=(systemd-container)
have ssh || need+=(openssh-client)
have ssh-keygen || need+=(openssh-client)
have pgrep || need+=(procps)
have dpkg-scanpackages || need+=(dpkg-dev)  # tests/lbhost_live: a local package source

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# De-duplicate while keeping order.
mapfile -t need < <(printf '%s\n' "${need[@]}" | awk '!seen[$0]++')
if [ "$(id -u)" -ne 0 ]; then
  echo "rke2ha: the tests need these Debian packages: ${need[*]}" >&2
  echo "rke2ha: install them as root: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "rke2ha: installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the services it installs; the tests start their own on loopback ports.
for svc in haproxy nginx named bind9 keepalived; do
  systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
