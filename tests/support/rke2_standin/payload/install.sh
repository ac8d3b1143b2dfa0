#!/bin/sh
# Stand-in for RKE2's install.sh (tar method), written for the test machines.
#
# Facts it follows, from rancher/rke2 install.sh (master):
# - INSTALL_RKE2_ARTIFACT_PATH: take sha256sum-<arch>.txt, rke2.linux-<arch>.tar.gz and, when
#   present, rke2-images.linux-<arch>.tar.zst from that directory instead of downloading;
# - the images tarball's sum is checked, then it goes to INSTALL_RKE2_AGENT_IMAGES_DIR
#   (default /var/lib/rancher/rke2/agent/images); online installs place no images;
# - the rke2 tarball's sum is checked ("download sha256 does not match X, got Y" otherwise),
#   then it is unpacked into INSTALL_RKE2_TAR_PREFIX (default /usr/local) and systemd reloaded;
# - it enables and starts nothing.
#
# Online (INSTALL_RKE2_VERSION without INSTALL_RKE2_ARTIFACT_PATH): the real script downloads
# from GitHub releases/download/<version>/. The test machines have no network, so the
# stand-in reads the same files from $RKE2_STANDIN_MIRROR/<version>/ -- a variable only tests
# set; or, because sudo drops the caller's environment, from the directory named on the first
# line of /etc/rke2-standin-mirror (a file only tests write on a machine) -- and fails like a
# failed download when that directory does not hold the version.
set -e

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR]  $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fatal "You need to be root to perform this install"

case "$(uname -m)" in
    x86_64|amd64) ARCH=amd64 ;;
    *) fatal "unsupported architecture $(uname -m) (the stand-in is built for amd64 only)" ;;
esac
SUFFIX="linux-${ARCH}"
PREFIX="${INSTALL_RKE2_TAR_PREFIX:-/usr/local}"
IMAGES_DIR="${INSTALL_RKE2_AGENT_IMAGES_DIR:-/var/lib/rancher/rke2/agent/images}"

if [ -n "${INSTALL_RKE2_ARTIFACT_PATH}" ]; then
    SOURCE="${INSTALL_RKE2_ARTIFACT_PATH}"
    info "staging local checksums from ${SOURCE}/sha256sum-${ARCH}.txt"
    WITH_IMAGES=1
else
    [ -n "${INSTALL_RKE2_VERSION}" ] || \
        fatal "INSTALL_RKE2_VERSION is required: the stand-in has no release channel to ask"
    MIRROR_FILE="${RKE2_STANDIN_MIRROR_FILE:-/etc/rke2-standin-mirror}"
    if [ -z "${RKE2_STANDIN_MIRROR}" ] && [ -r "${MIRROR_FILE}" ]; then
        RKE2_STANDIN_MIRROR="$(head -n 1 "${MIRROR_FILE}")"
    fi
    [ -n "${RKE2_STANDIN_MIRROR}" ] || \
        fatal "download failed: no network here (tests set RKE2_STANDIN_MIRROR)"
    SOURCE="${RKE2_STANDIN_MIRROR}/${INSTALL_RKE2_VERSION}"
    info "using ${INSTALL_RKE2_VERSION} as release"
    [ -d "${SOURCE}" ] || fatal "download failed: no release ${INSTALL_RKE2_VERSION}"
    WITH_IMAGES=0
fi

SUMS="${SOURCE}/sha256sum-${ARCH}.txt"
TARBALL="${SOURCE}/rke2.${SUFFIX}.tar.gz"
IMAGES="${SOURCE}/rke2-images.${SUFFIX}.tar.zst"
[ -f "${SUMS}" ] || fatal "${SUMS} not found"
[ -f "${TARBALL}" ] || fatal "${TARBALL} not found"

# expected_sum NAME: the sum the checksum file lists for NAME (exact name match).
expected_sum() {
    awk -v name="$1" '$2 == name || $2 == "*" name { print $1; exit }' "${SUMS}"
}

# verify FILE: fail unless FILE's sha256 is the one the checksum file lists.
verify() {
    want="$(expected_sum "$(basename "$1")")"
    got="$(sha256sum "$1" | awk '{print $1}')"
    if [ -z "${want}" ] || [ "${want}" != "${got}" ]; then
        fatal "download sha256 does not match ${want:-<missing>}, got ${got}"
    fi
}

TMP_DIR="$(mktemp -d -t rke2-install.XXXXXXXXXX)"
trap 'rm -rf "${TMP_DIR}"' EXIT INT

if [ "${WITH_IMAGES}" = 1 ] && [ -f "${IMAGES}" ]; then
    cp -f "${IMAGES}" "${TMP_DIR}/"
    info "verifying airgap tarball"
    verify "${TMP_DIR}/$(basename "${IMAGES}")"
    mkdir -p "${IMAGES_DIR}"
    info "installing airgap tarball to ${IMAGES_DIR}"
    mv -f "${TMP_DIR}/$(basename "${IMAGES}")" "${IMAGES_DIR}/"
fi

cp -f "${TARBALL}" "${TMP_DIR}/"
info "verifying tarball"
verify "${TMP_DIR}/$(basename "${TARBALL}")"
info "unpacking tarball file to ${PREFIX}"
mkdir -p "${PREFIX}"
tar xzf "${TMP_DIR}/$(basename "${TARBALL}")" -C "${PREFIX}"
if [ -z "${INSTALL_RKE2_SKIP_RELOAD}" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
fi
