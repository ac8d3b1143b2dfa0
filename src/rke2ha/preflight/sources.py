"""Where each pre-flight requirement comes from (cited by every finding)."""

from __future__ import annotations

RKE2_REQUIREMENTS = "RKE2 docs: Requirements (https://docs.rke2.io/install/requirements)"
RKE2_ARCH = f"{RKE2_REQUIREMENTS}: x86_64 and arm64/aarch64, a Linux with systemd"
RKE2_HARDWARE = (
    "RKE2 docs: Requirements, Hardware (https://docs.rke2.io/install/requirements#hardware) "
    "and Resource Profiling (https://docs.rke2.io/reference/resource_profiling); Rancher docs: "
    "Installation Requirements, RKE2 Kubernetes (CPU and memory by cluster size, "
    "https://ranchermanager.docs.rancher.com/getting-started/installation-and-upgrade/"
    "installation-requirements)"
)
RKE2_NODE_NAMES = f"{RKE2_REQUIREMENTS}: two nodes cannot have the same node name (the hostname)"
RKE2_PORTS = (
    f"{RKE2_REQUIREMENTS}: inbound network rules (TCP 9345 supervisor, 6443 API, 2379/2380 "
    "etcd, 10250 kubelet between servers; UDP 8472 canal VXLAN)"
)
RKE2_LOCAL_PORTS = (
    f"{RKE2_PORTS}; rancher/rke2#4602 (2381 etcd health); Kubernetes docs: Ports and Protocols "
    "(https://kubernetes.io/docs/reference/networking/ports-and-protocols/: 10250, 10257, "
    "10259; kubelet healthz 10248); Rancher docs: Setting up Infrastructure for a High "
    "Availability RKE2 Kubernetes Cluster (the ingress controller listens on 80 and 443 of "
    "every node)"
)
RKE2_KNOWN_ISSUES = "RKE2 docs: Known Issues and Limitations (https://docs.rke2.io/known_issues)"
FIREWALLD = f"{RKE2_KNOWN_ISSUES}: Firewalld conflicts with default networking"
NETWORKMANAGER = (
    f"{RKE2_KNOWN_ISSUES}: NetworkManager (make it ignore cali* and flannel* interfaces)"
)
NM_CLOUD_SETUP = (
    f"{RKE2_KNOWN_ISSUES}: NetworkManager, nm-cloud-setup.service and nm-cloud-setup.timer "
    "must be disabled"
)
SELINUX = "RKE2 docs: SELinux (https://docs.rke2.io/security/selinux): rke2-selinux policy"
APPARMOR = (
    "rancher/rke2#1773, rancher/rke2#1888, rancher/docs#3651 (containerd needs apparmor_parser "
    "when AppArmor is enabled)"
)
TIME = (
    "etcd rafthttp (etcd-io/etcd server/etcdserver/api/rafthttp/probing_status.go): warns "
    "when the clock difference against a peer exceeds 1s"
)
SWAP = (
    "Kubernetes docs: Swap memory management (https://kubernetes.io/docs/concepts/"
    "cluster-administration/swap-memory-management/): kubelet's failSwapOn"
)
DEFAULT_ROUTE = (
    'rancher/rke2#1242, rancher/rke2#1572 (rke2 exits: "no default routes found in '
    '/proc/net/route")'
)
SUDO = "rke2ha README: Pre-flight (rke2ha runs commands as root: root, or passwordless sudo -n)"
SSH = "rke2ha README: Pre-flight (ssh: block; host keys verified against known_hosts)"
RESOLVE = (
    "Rancher docs: Setting up Infrastructure for a High Availability RKE2 Kubernetes Cluster "
    "(the Rancher hostname resolves to the load balancer)"
)
