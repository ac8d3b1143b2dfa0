"""In-process stand-ins for the nodes, at the SSH adapter's interface (`Connection`):
each command `rke2node` sends is interpreted against a small model of one machine (files,
the installed release, the unit's state), so the order, the records in the state file and
interruptions can be checked without machines. What the commands do on a real machine is
the live tests' job (tests/rke2_up_live)."""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rke2ha.rke2node.artifacts import parse_sums
from rke2ha.ssh.connection import Result
from rke2ha.ssh.target import Target

V = "v1.33.6+rke2r1"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


RKE2_YAML = f"""apiVersion: v1
clusters:
- cluster: {{certificate-authority-data: {_b64("CA")}, server: 'https://127.0.0.1:6443'}}
  name: default
contexts:
- context: {{cluster: default, user: default}}
  name: default
current-context: default
kind: Config
users:
- name: default
  user: {{client-certificate-data: {_b64("C")}, client-key-data: {_b64("K")}}}
"""


class Killed(BaseException):
    """`up` killed (kill -9) between two commands: nothing after it runs."""


@dataclass
class Node:
    name: str
    version: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    enabled: bool = False
    active: str = "inactive"
    journal: list[str] = field(default_factory=list)
    installs: int = 0
    corrupt_upload: bool = False
    install_fails: bool = False
    leftovers_removed: int = 0


@dataclass
class World:
    nodes: dict[str, Node]
    events: list[tuple[str, str]] = field(default_factory=list)
    commands: int = 0
    kill_at: int | None = None  # the command number at which `up` dies
    refuse_token: set[str] = field(default_factory=set)

    def tick(self) -> None:
        self.commands += 1
        if self.kill_at is not None and self.commands == self.kill_at:
            raise Killed(f"killed at command {self.commands}")

    def ready(self, name: str) -> bool:
        node = self.nodes[name]
        return node.active == "active"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeConnection:
    def __init__(self, world: World, target: Target) -> None:
        self.world = world
        self.target = target
        self.node = world.nodes[target.node]

    async def close(self) -> None:
        return None

    async def put(self, local: Path, remote: str, timeout: float) -> None:
        self.world.tick()
        data = local.read_bytes()
        if self.node.corrupt_upload and local.name.endswith(".tar.zst"):
            data = data[:-1] + b"?"
        self.node.uploads[remote] = data
        self.world.events.append((self.node.name, f"upload {local.name}"))

    async def run(
        self,
        command: str,
        *,
        root: bool = True,
        timeout: float | None = None,
        input: str | None = None,
    ) -> Result:
        self.world.tick()
        node = self.node
        if "for b in /usr/local/bin/rke2" in command:
            return Result(0, self._facts(command), "")
        if command.startswith("find /tmp -maxdepth 1 -name 'rke2ha-artifacts.*'"):
            node.leftovers_removed += len(node.uploads)
            node.uploads.clear()
            return Result(0, "", "")
        if command.startswith("mktemp -d"):
            return Result(0, "/tmp/rke2ha-artifacts.x1\n", "")
        if command.startswith("cd ") and command.endswith("sha256sum -c -"):
            # GNU sha256sum -c: `<file>: OK` / `<file>: FAILED` per line, 1 when any fails.
            folder = shlex.split(command)[1]
            lines, status = [], 0
            for line in (input or "").splitlines():
                want, name = line.split("  ", 1)
                data = node.uploads.get(f"{folder}/{name}")
                ok = data is not None and _sha(data) == want
                lines.append(f"{name}: {'OK' if ok else 'FAILED'}")
                status = status if ok else 1
            return Result(status, "\n".join(lines) + "\n", "")
        if command.startswith("rm -rf /tmp/rke2ha-artifacts."):
            node.uploads.clear()
            return Result(0, "", "")
        if "INSTALL_RKE2_ARTIFACT_PATH=" in command:
            assert any(p.endswith("/install.sh") for p in node.uploads), "install.sh not uploaded"
            sums = parse_sums(
                next(d for p, d in node.uploads.items() if p.endswith(".txt")).decode()
            )
            for path, data in node.uploads.items():
                name = path.rsplit("/", 1)[1]
                if name in sums and sums[name] != _sha(data):
                    return Result(1, "", f"[ERROR] download sha256 does not match for {name}")
            if node.install_fails:
                return Result(1, "[INFO]  finding release\n", "[ERROR]  no space left on device")
            node.version = V
            node.installs += 1
            self.world.events.append((node.name, "install"))
            return Result(0, "[INFO] Install complete\n", "")
        if "INSTALL_RKE2_VERSION=" in command:
            script = command.rsplit(" ", 1)[1]
            if script != "-":
                assert script in node.uploads, f"{script} not uploaded"
            node.version = command.split("INSTALL_RKE2_VERSION=", 1)[1].split()[0]
            node.installs += 1
            self.world.events.append((node.name, f"install online {script}"))
            return Result(0, "[INFO] Install complete\n", "")
        if command.startswith("umask 077"):
            path = command.rsplit(" ", 1)[1]
            node.files[path] = input or ""
            self.world.events.append((node.name, f"write {path}"))
            return Result(0, "", "")
        if command == "systemctl enable rke2-server":
            node.enabled = True
            return Result(0, "", "")
        if command in ("systemctl start --no-block rke2-server",
                       "systemctl restart --no-block rke2-server"):  # fmt: skip
            self._start()
            return Result(0, "", "")
        if command.startswith("cat /etc/rancher/rke2/rke2.yaml"):
            ok = node.active == "active"
            return Result(0 if ok else 1, RKE2_YAML if ok else "", "")
        if command == "date +%s":
            return Result(0, "1700000000\n", "")
        if command.startswith("journalctl -u rke2-server --since @"):
            fatal = [line for line in node.journal if "level=fatal" in line][-3:]
            return Result(0, "".join(f"{line}\n" for line in fatal), "")
        if command.startswith("journalctl -u rke2-server"):
            return Result(0, "\n".join(node.journal[-20:]) + "\n", "")
        if "rke2-uninstall.sh" in command:
            self.world.events.append((node.name, "uninstall"))
            node.version, node.enabled, node.active = None, False, "inactive"
            node.files.clear()
            return Result(0, "", "")
        raise AssertionError(f"unexpected command on {node.name}: {command}")

    def _start(self) -> None:
        node = self.node
        config = node.files.get("/etc/rancher/rke2/config.yaml", "")
        self.world.events.append((node.name, "start"))
        if node.name in self.world.refuse_token:
            node.active = "activating"
            node.journal.append(
                'level=fatal msg="starting kubernetes: preparing server: token CA hash does '
                'not match the Cluster CA certificate hash"'
            )
            return
        joins = re.search(r"^server: (\S+)", config, re.M)
        first_ready = [n for n in self.world.nodes.values() if n.active == "active"]
        if joins and not first_ready:
            node.active = "activating"
            node.journal.append("waiting for the server to answer")
            return
        if any(n.active == "activating" for n in self.world.nodes.values() if n is not node):
            raise AssertionError(f"{node.name} started while another server was joining")
        node.active = "active"

    def _facts(self, command: str) -> str:
        node = self.node
        lines = [f"version={node.version or ''}"]
        config = node.files.get("/etc/rancher/rke2/config.yaml")
        authn = node.files.get("/etc/rancher/rke2/authentication-config.yaml")
        lines.append(f"config={_sha(config.encode()) if config is not None else ''}")
        lines.append(f"authn={_sha(authn.encode()) if authn is not None else ''}")
        for name in re.findall(r"manifest:([^=]+)=", command):
            text = node.files.get(f"/var/lib/rancher/rke2/server/manifests/{name}")
            lines.append(f"manifest:{name}={_sha(text.encode()) if text is not None else ''}")
        lines.append(f"enabled={'enabled' if node.enabled else 'disabled'}")
        lines.append(f"active={node.active}")
        lines.append("etcd=no")
        return "\n".join(lines) + "\n"
