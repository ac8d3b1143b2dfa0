"""Helpers of the RKE2 stand-in tests: put the artifacts on a machine over its sh, run the
stand-in there through systemd, read its journal and the real etcd's membership, and call
its HTTPS ports from the workstation namespace with the host's own TLS client."""

from __future__ import annotations

import base64
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tests.support.machines import Machine, Testbed

REMOTE_ARTIFACTS = "/root/rke2-artifacts"
TLS = "/var/lib/rancher/rke2/server/tls"
ETCDCTL = (
    f"ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert={TLS}/server-ca.crt "
    f"--cert={TLS}/etcd/node.crt --key={TLS}/etcd/node.key"
)


def sh(machine: Machine, command: str, timeout: float = 60.0) -> str:
    """`command` on the machine; its stdout, or AssertionError with everything it said."""
    done = machine.sh(command, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"{machine.name}: `{command}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def upload(machine: Machine, source: Path, target: str = REMOTE_ARTIFACTS) -> None:
    """Every file of `source` into `target` on the machine (base64 through its sh)."""
    sh(machine, f"rm -rf {target} && mkdir -p {target}")
    for path in sorted(source.iterdir()):
        data = base64.b64encode(path.read_bytes()).decode()
        done = machine.sh(f"base64 -d > {target}/{shlex.quote(path.name)}", input=data)
        assert done.returncode == 0, done.stderr


def install(machine: Machine, env: str = f"INSTALL_RKE2_ARTIFACT_PATH={REMOTE_ARTIFACTS}") -> Any:
    return machine.sh(f"{env} sh {REMOTE_ARTIFACTS}/install.sh", timeout=60)


def write_config(machine: Machine, config: dict[str, Any]) -> None:
    text = yaml.safe_dump(config, sort_keys=False)
    done = machine.sh(
        "mkdir -p /etc/rancher/rke2 && umask 077 && cat > /etc/rancher/rke2/config.yaml",
        input=text,
    )
    assert done.returncode == 0, done.stderr


def start(machine: Machine) -> None:
    # The unit is Type=notify without a start timeout: never a blocking start.
    sh(machine, "systemctl enable -q rke2-server && systemctl start --no-block rke2-server")


def unit_state(machine: Machine) -> str:
    return machine.sh("systemctl is-active rke2-server").stdout.strip()


def wait_active(machine: Machine, timeout: float = 60.0) -> float:
    """Seconds until the unit is active (READY=1 received); AssertionError with the journal."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if unit_state(machine) == "active":
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"{machine.name}: rke2-server not active:\n{journal(machine)[-3000:]}")


def wait_journal(machine: Machine, text: str, since: int = 0, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = journal(machine, since)
        if text in log:
            return log
        time.sleep(0.3)
    tail = journal(machine, since)[-3000:]
    raise AssertionError(f"{machine.name}: {text!r} not in the journal:\n{tail}")


def now(machine: Machine) -> int:
    """The machine's clock in seconds, to read only the journal written after it."""
    return int(sh(machine, "date +%s"))


def journal(machine: Machine, since: int = 0) -> str:
    """What rke2-server (and systemd about it) logged since `since` (epoch seconds)."""
    return machine.sh(f"journalctl -u rke2-server --no-pager -o cat --since=@{since}").stdout


def stop_and_forget(machine: Machine) -> None:
    """Stop the unit and drop this machine's RKE2 state, keeping the installed files."""
    machine.sh(
        "systemctl disable --now rke2-server >/dev/null 2>&1; systemctl reset-failed rke2-server;"
        " pkill -9 -f '^/usr/bin/etcd --name='; rm -rf /var/lib/rancher/rke2/server"
        " /etc/rancher/rke2/config.yaml /etc/rancher/rke2/rke2.yaml; true"
    )


def etcd_members(machine: Machine) -> list[dict[str, Any]]:
    """The real etcd's member list, read with the real etcdctl on `machine`."""
    doc = json.loads(sh(machine, f"{ETCDCTL} member list -w json"))
    return list(doc.get("members", []))


def remove_members(machine: Machine, names: tuple[str, ...], timeout: float = 30.0) -> None:
    """Remove the members called `names` (and unstarted ones) through `machine`'s etcd.
    Learners and unstarted members go first: etcd refuses a removal that would leave fewer
    started voters than a quorum ("unhealthy cluster"), so a refused one is retried."""
    deadline = time.monotonic() + timeout
    while True:
        doomed = [m for m in etcd_members(machine) if m.get("name", "") in ("", *names)]
        if not doomed:
            return
        doomed.sort(key=lambda m: (not m.get("isLearner"), bool(m.get("name"))))
        done = machine.sh(f"{ETCDCTL} member remove {int(doomed[0]['ID']):x}")
        if done.returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{machine.name}: member remove: {done.stderr}")
            time.sleep(0.5)


@dataclass
class Reply:
    status: int
    body: str


# Runs in the workstation namespace with the host's python: one HTTPS GET, the CA checked
# (names included), a client certificate when given.
_CLIENT = """
import json, ssl, sys, urllib.request, urllib.error
url, ca, cert, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
try:
    with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
        print(json.dumps([r.status, r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode()]))
"""


@dataclass
class Credentials:
    ca: Path
    cert: Path | None = None
    key: Path | None = None


def kubeconfig_credentials(machine: Machine, dest: Path) -> Credentials:
    """CA and client certificate from the machine's /etc/rancher/rke2/rke2.yaml."""
    doc = yaml.safe_load(sh(machine, "cat /etc/rancher/rke2/rke2.yaml"))
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    dest.mkdir(parents=True, exist_ok=True)
    creds = Credentials(dest / "ca.crt", dest / "client.crt", dest / "client.key")
    creds.ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    assert creds.cert and creds.key
    creds.cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    creds.key.write_bytes(base64.b64decode(user["client-key-data"]))
    creds.key.chmod(0o600)
    return creds


def https_get(
    bed: Testbed, url: str, creds: Credentials, client: bool = True, tolerate: bool = False
) -> Reply:
    """One GET; `tolerate`: a connection that fails is status 0 instead of an error."""
    argv = [
        sys.executable, "-c", _CLIENT, url, str(creds.ca),
        str(creds.cert) if client and creds.cert else "",
        str(creds.key) if client and creds.key else "",
    ]  # fmt: skip
    done = bed.workstation.run(argv, timeout=30)
    if tolerate and done.returncode != 0:
        return Reply(0, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
    assert done.returncode == 0, done.stderr
    status, body = json.loads(done.stdout)
    return Reply(int(status), str(body))


# One raw HTTP/1.1 request from the workstation namespace: TLS with a chosen SNI (the
# Rancher hostname at a node's address), no verification unless a CA is given.
_RAW = """
import json, socket, ssl, sys
address, port, tls, host, path, ca, proxy = sys.argv[1:8]
sock = socket.create_connection((address, int(port)), timeout=10)
if proxy:
    sock.sendall(proxy.encode() + b"\\r\\n")
peer_cn = ""
if tls == "1":
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
    sock = ctx.wrap_socket(sock, server_hostname=host)
    cert = sock.getpeercert(binary_form=False) if ca else {}
    peer_cn = json.dumps(cert.get("subject", [])) if cert else ""
sock.sendall(f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
data = b""
while True:
    try:
        chunk = sock.recv(65536)
    except OSError:  # reset: closed without an answer
        break
    if not chunk:
        break
    data += chunk
if not data:
    print(json.dumps([0, {}, "", ""]))
    sys.exit(0)
head, _, body = data.partition(b"\\r\\n\\r\\n")
lines = head.decode("latin-1").split("\\r\\n")
headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
print(json.dumps([int(lines[0].split()[1]), headers, body.decode("utf-8", "replace"), peer_cn]))
"""


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: str
    subject: str


def raw_get(
    bed: Testbed,
    machine: Machine,
    port: int,
    host: str,
    path: str,
    ca: Path | None = None,
    proxy: str = "",
) -> RawReply:
    """One request; status 0 when the server closed without answering. `proxy`: a PROXY v1
    line sent first (without CRLF)."""
    tls = "1" if port == 443 else "0"
    argv = [
        sys.executable, "-c", _RAW, machine.address, str(port), tls, host, path,
        str(ca or ""), proxy,
    ]  # fmt: skip
    done = bed.workstation.run(argv, timeout=30)
    assert done.returncode == 0, done.stderr
    status, headers, body, subject = json.loads(done.stdout)
    return RawReply(int(status), dict(headers), str(body), str(subject))


def rancher_manifests(hostname: str, tls_source: str = "rancher") -> str:
    """HelmChart manifests as RKE2 takes them: cert-manager, then Rancher in cattle-system."""
    docs = [
        {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": "cert-manager", "namespace": "kube-system"},
            "spec": {
                "chart": "cert-manager",
                "repo": "https://charts.jetstack.io",
                "targetNamespace": "cert-manager",
                "createNamespace": True,
                "valuesContent": "crds:\n  enabled: true\n",
            },
        },
        {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": "rancher", "namespace": "kube-system"},
            "spec": {
                "chart": "rancher",
                "repo": "https://releases.rancher.com/server-charts/stable",
                "targetNamespace": "cattle-system",
                "createNamespace": True,
                "valuesContent": yaml.safe_dump(
                    {
                        "hostname": hostname,
                        "replicas": 3,
                        "ingress": {"ingressClassName": "nginx", "tls": {"source": tls_source}},
                    }
                ),
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)
