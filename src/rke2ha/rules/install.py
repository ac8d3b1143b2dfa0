"""Rule `rke2.install`: what `up` needs to install RKE2 (and Rancher) on the nodes itself.

The install script takes the release to install from `INSTALL_RKE2_VERSION`; without it
it installs the newest of a channel, so two runs could put different releases on the
servers (rancher/rke2 install.sh, "INSTALL_RKE2_VERSION"; https://docs.rke2.io/install/
configuration). An air-gap install needs the release's tarball, images and sums file
beside install.sh (https://docs.rke2.io/install/airgap, "Tarball Method").
"""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.rules.rke2 import parse_version
from rke2ha.spec import Spec

INSTALL_DOCS = (
    "RKE2 docs: Installation Options and Air-Gap Install (https://docs.rke2.io/install/airgap)"
)
# Keys of config.yaml rke2ha writes itself (`rke2ha.render.rke2.server_config`).
_INSTEAD = {"cni": "; use rke2.cni", "ingress-controller": "; use ingress (nginx or traefik)"}
OWNED_KEYS = ("token", "server", "tls-san", "node-name", "cni", "ingress-controller")


def _install(spec: Spec, facts: Facts) -> Iterator[Issue]:
    rke2 = spec.rke2
    for key in OWNED_KEYS:
        if key in rke2.config:
            yield error(
                f"rke2.config.{key}",
                f"rke2ha sets `{key}` in config.yaml itself (the same on every server, or "
                "per server); a second value would contradict it",
                f"remove rke2.config.{key}" + _INSTEAD.get(key, ""),
            )
    if rke2.install == "none":
        if spec.rancher.install:
            yield error(
                "rancher.install",
                "rancher.install puts HelmChart manifests on the first server rke2ha "
                "installed, but rke2.install is none",
                "set rke2.install: airgap or online, or install Rancher with the rendered "
                "rancher/install.sh",
            )
        if spec.provider == "existing" and rke2.version is not None:
            yield warning(
                "rke2.version",
                "provider existing does not use it while rke2.install is none: rke2ha "
                "installs no RKE2, so the servers run whatever you installed",
                "remove rke2.version; or set rke2.install: online or airgap and rke2ha installs "
                "that release (INSTALL_RKE2_VERSION of install.sh); installing by hand, pin it "
                "with INSTALL_RKE2_VERSION yourself",
            )
        return
    if spec.provider != "existing":
        return  # rule provider.ignored says the field does nothing there
    if spec.ssh is None:
        yield error(
            "rke2.install",
            f"rke2.install: {rke2.install} installs over SSH, but the spec has no ssh: block",
            "add ssh: (user, identity_file) so rke2ha can log in to the nodes",
        )
    if rke2.version is None:
        yield error(
            "rke2.version",
            f"rke2.install: {rke2.install} needs the release to install pinned; without it "
            "install.sh takes the newest of its channel and servers could differ",
            "set rke2.version, e.g. v1.33.6+rke2r1",
        )
    elif parse_version(rke2.version) is None:
        yield error(
            "rke2.version",
            f"{rke2.version!r} is not an RKE2 release name like v1.33.6+rke2r1",
            "write the release as vMAJOR.MINOR.PATCH+rke2rN, as on the RKE2 releases page",
        )
    if rke2.install == "airgap" and rke2.airgap is None:
        yield error(
            "rke2.airgap.artifacts",
            "rke2.install: airgap needs the folder with install.sh, rke2.linux-amd64.tar.gz, "
            "rke2-images.linux-amd64.tar.zst and sha256sum-amd64.txt",
            "set rke2.airgap.artifacts to that folder (download the files of rke2.version "
            "from the RKE2 releases page)",
        )


RULES = (
    Rule(
        "rke2.install",
        "installing RKE2 needs a pinned version, SSH, and for air-gap the artifacts",
        INSTALL_DOCS,
        _install,
    ),
)
