"""RKE2 stand-in for the test machines: air-gap artifacts with RKE2's real names and layout
whose `rke2 server` runs a real etcd and answers like RKE2 where rke2ha depends on it.

Interface (what a test uses)
----------------------------
    from tests.support.rke2_standin import build_artifacts, build_mirror, ARTIFACT_NAMES

    artifacts = build_artifacts(tmp_path / "artifacts", version="v1.33.2+rke2r1")
    # -> tmp_path/artifacts/{install.sh, rke2.linux-amd64.tar.gz,
    #                        rke2-images.linux-amd64.tar.zst, sha256sum-amd64.txt}
    # spec: rke2: {install: airgap, version: v1.33.2+rke2r1, airgap: {artifacts: <that dir>}}

    mirror = build_mirror(tmp_path / "mirror", ("v1.33.2+rke2r1",))   # online mode
    # on the machine: RKE2_STANDIN_MIRROR=<dir holding <version>/...> INSTALL_RKE2_VERSION=...
    # sh install.sh (only tests set RKE2_STANDIN_MIRROR: the machines have no network); as
    # sudo drops the caller's environment, install.sh also reads that directory from the first
    # line of /etc/rke2-standin-mirror, which a test writes on the machine beforehand

Artifacts are built on the workstation side at test time (milliseconds, deterministic bytes:
the same version gives the same sums). Nothing else is needed on the machines: their root
filesystem carries python3, python3-yaml, python3-cryptography, etcd-server and etcd-client.

On a machine (all real: sh, tar, sha256sum, systemd, the unit, etcd):
    INSTALL_RKE2_ARTIFACT_PATH=<dir> sh <dir>/install.sh
        # checks the sums, unpacks to /usr/local, images to .../agent/images, starts nothing
    write /etc/rancher/rke2/config.yaml (token, server, tls-san, node-name, node-ip,
          kube-apiserver-arg: [authentication-config=<file>])
    systemctl enable rke2-server && systemctl start --no-block rke2-server   # Type=notify
    /usr/local/bin/rke2-uninstall.sh                                         # removes it all

What `rke2 server` does (payload/rke2.py; facts and sources in its comments)
- First server (no `server:`, no etcd data): makes the cluster CA, starts /usr/bin/etcd as a
  new one-member cluster on 2379/2380 (TLS, data in /var/lib/rancher/rke2/server/db/etcd),
  writes server/token and server/node-token (`K10<sha256 of CA PEM>::server:<password>`) and
  /etc/rancher/rke2/rke2.yaml (0600, https://127.0.0.1:6443, admin client certificate).
- Joiner (`server:` set, no data): GET <server>/cacerts (hash checked against a K10 token),
  GET /v1-rke2/config with basic auth server:<password> (wrong token: "failed to validate
  server configuration: ...: 401 Unauthorized", exit 1), takes the CA from
  /v1-rke2/server-bootstrap, adds itself to etcd as a learner through the existing members
  and starts etcd with --initial-cluster-state=existing; the etcd leader's server promotes
  learners every 15 s, as RKE2 does, and the joiner reports READY=1 only once it is a voter
  (so a join takes up to ~15 s; RKE2_STANDIN_LEARNER_TICK=<s> in /etc/default/rke2-server
  on the servers, or <s> in /run/rke2-standin-learner-tick on the leader while it runs,
  shortens that for a test that wants it). Two joins at once fail on etcd's
  own "too many learner members in cluster"; an unreachable `server:` fails on "failed to
  get CA certs". A failed start exits 1 and, like the real unit (Restart=always,
  RestartSec=5s), is started again: `systemctl is-active` says `activating`, not `failed`,
  and the journal has the fatal line and "status=1/FAILURE".
- With etcd data: `server:` is ignored; etcd restarts from its data.
- 9345 and 6443 listen as soon as the node has its certificates, before it has joined, as
  RKE2's 9345 does: `/ping` answers `pong` while `/readyz` is 500 and the unit is still
  `activating`. Only `/readyz` (and the node's Ready condition) tell a joined server.
- Joins in the machine's journal (`journalctl -u rke2-server -o short-iso-precise`): begin
  `Adding member <node>=https://<ip>:2380 to etcd cluster [...] as a learner`, then
  `Starting etcd to join cluster with members [...]` (RKE2's line), end `etcd member <node>
  promoted to voter` and `rke2 is up and running`; the leader logs `Promoted learner etcd
  member <node>`. `debug: true` in config.yaml adds a `Checking etcd learners` line per tick.
- 9345 (TLS): /ping -> pong, /cacerts, /v1-rke2/* (token). 6443 (TLS): /livez, /readyz,
  /healthz (etcd reachable), /version, /api/v1/nodes (NodeList; a node is Ready while its etcd
  member is a started voter and its heartbeat, kept in etcd under /registry/minions/, is
  younger than 40 s) for a client certificate of the cluster CA; anonymous gets 401 unless the
  authentication-config (`kube-apiserver-arg: [authentication-config=<file>]`) allows the
  path. READY=1 to systemd once serving. Logs (logrus format) go to stderr, so
  `journalctl -u rke2-server` on the machine shows joins.
- Add-ons (payload/ingress.py, its docstring lists the fields read): every file in
  server/manifests/ is applied into the cluster (etcd), so one server's directory is seen by
  all. 80/443 answer with the lab node emulator's logic (rke2ha.lab.node_app/ingress_model,
  bundled in share/rke2/standin/): /healthz on the catch-all, `X-Rke2ha-Node: <node>` on
  every answer, PROXY protocol and forwarded headers as the ingress HelmChartConfig says, and
  Rancher (/ping -> pong, the 308 to https, /v3/subscribe) for the hostname only once a
  HelmChart for the rancher chart in cattle-system names it (plus cert-manager's HelmChart
  when its TLS source needs it), 5 s after it appears (RKE2_STANDIN_RANCHER_DELAY).

What this stand-in cannot prove about a real RKE2
- Anything of Kubernetes itself: no kubelet, containerd, static pods, CNI, scheduler,
  helm-controller; "Ready" is etcd membership plus a heartbeat, not kubelet status.
- Helm: charts are never fetched or rendered; a HelmChart "installs" when its fields say it
  would serve the hostname. A chart that fails to install for other reasons (bad values,
  no registry access, chartContent that is not a chart) still "installs" here.
- Images: the images tarball is filler; air-gap image import is not exercised.
- Resource needs and timing: a real first server takes minutes, the stand-in ~2 s.
- Certificates: one CA for everything (RKE2 has separate server, client, etcd and request-
  header CAs); the supervisor's dynamic SANs are not modelled (joiners check the chain only).
- RKE2's bootstrap data encryption with the token, agent tokens and bootstrap tokens.
- Upgrades, etcd snapshots, certificate rotation, SELinux/AppArmor, CIS profiles.
- Kubernetes authentication beyond client certificates of the cluster CA and the anonymous
  paths of an authentication-config: no bearer (service account) tokens, no RBAC.
- Node objects: a server's record is written by the stand-in itself; nothing deletes it
  (neither does Kubernetes until someone deletes the Node), and "Ready" goes Unknown 50 s
  after its heartbeats stop, from the heartbeat age alone.
On real machines a user checks these with `kubectl get nodes` through the fetched kubeconfig,
`kubectl -n kube-system get pods` and `journalctl -u rke2-server`.
"""

from tests.support.rke2_standin.artifacts import (
    ARTIFACT_NAMES,
    CHECKSUMS,
    DEFAULT_VERSION,
    IMAGES,
    INSTALLER,
    TARBALL,
    build_artifacts,
    build_mirror,
    sha256_file,
)

__all__ = [
    "ARTIFACT_NAMES",
    "CHECKSUMS",
    "DEFAULT_VERSION",
    "IMAGES",
    "INSTALLER",
    "TARBALL",
    "build_artifacts",
    "build_mirror",
    "sha256_file",
]
