"""What RKE2 on one server node needs, from its facts: pure, no I/O.

Facts come from one shell script run as root (`facts_script`), printed as `key=value`
lines. Steps are commands run as root, in order; `Step.kind` says what a failure means.

Where RKE2 puts things (rancher/rke2 install.sh, tarball method): the binary in
`/usr/local/bin`, or `/opt/rke2/bin` when /usr/local is read-only; `rke2-uninstall.sh`
beside it; the unit `rke2-server.service`, which install.sh installs but neither enables
nor starts. The unit is `Type=notify` (rancher/rke2#1122: `systemctl start` returns only
once the server reports ready) with `TimeoutStartSec=0` and `Restart=always` (rancher/rke2
bundle/lib/systemd/system/rke2-server.service): a blocking start of a server that cannot
join waits forever, so the start is `--no-block` and the caller polls (`gate`).
`rke2 --version` prints `rke2 version v1.33.5+rke2r1 (<commit>)` on its first line.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Literal

from rke2ha.errors import InvalidError

CONFIG_DIR = "/etc/rancher/rke2"
CONFIG = f"{CONFIG_DIR}/config.yaml"
AUTHN = f"{CONFIG_DIR}/authentication-config.yaml"
KUBECONFIG = f"{CONFIG_DIR}/rke2.yaml"
MANIFESTS = "/var/lib/rancher/rke2/server/manifests"
# etcd's data directory: once it exists the server rejoins its cluster and ignores `server:`
# (https://docs.rke2.io/install/ha, "Once the first server ... `server` is ignored").
ETCD_DATA = "/var/lib/rancher/rke2/server/db/etcd"
UNIT = "rke2-server"
BINARIES = ("/usr/local/bin/rke2", "/opt/rke2/bin/rke2")
UNINSTALL = ("/usr/local/bin/rke2-uninstall.sh", "/opt/rke2/bin/rke2-uninstall.sh")

StepKind = Literal["upload", "verify", "install", "write", "enable", "start", "restart"]


@dataclass(frozen=True)
class NodeFacts:
    version: str | None  # installed rke2 release; None: not installed
    config_sha: str | None  # sha256 of config.yaml; None: no file
    authn_sha: str | None
    manifest_shas: dict[str, str]  # file name in MANIFESTS -> sha256
    enabled: bool
    active: str  # systemctl is-active: active, activating, inactive, failed, ...
    etcd_data: bool
    # sha256 of config.yaml's `token:` line (never the token itself); None: no such line
    token_sha: str | None = None

    @property
    def running(self) -> bool:
        return self.active in ("active", "activating")


@dataclass(frozen=True)
class Step:
    kind: StepKind
    what: str  # for the progress line: "install RKE2 v1.33.6+rke2r1"
    command: str = ""
    input: str | None = None  # stdin of the command (file contents: never on a command line)


@dataclass(frozen=True)
class NodeFiles:
    """What `render` writes for this server: config.yaml, the authentication config (or
    None) and the manifests (file name in MANIFESTS -> text)."""

    config: str
    authn: str | None
    manifests: dict[str, str]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(config_sha: str | None, authn_sha: str | None) -> str:
    """One short value for the plan: config.yaml and the authentication config together."""
    if config_sha is None:
        return "none"
    return sha256(f"{config_sha}:{authn_sha or ''}")[:16]


def token_line_sha(config: str) -> str | None:
    """sha256 of config.yaml's `token:` line as `grep` prints it (with its newline), or None."""
    line = next((x for x in config.splitlines() if x.startswith("token:")), None)
    return None if line is None else sha256(line.rstrip() + "\n")


def token_refusal(node: str, facts: NodeFacts, files: NodeFiles) -> str | None:
    """Why the config must not be written: the node already holds etcd data made with another
    token. RKE2 encrypts its bootstrap data with the token, so a server restarted with a new
    one refuses to start ("bootstrap data already found and encrypted with different token",
    rancher/rke2#6250): writing it would take a running server down. Typically the secrets
    folder was lost and a new token file made."""
    new = token_line_sha(files.config)
    if not facts.etcd_data or facts.token_sha is None or new is None or facts.token_sha == new:
        return None
    return (
        f"{node} holds etcd data made with another cluster token than rke2.token_file; a server "
        "restarted with a new token refuses to start, so nothing is changed; fix: put the token "
        f"{node} was installed with back into rke2.token_file (it is the `token:` of "
        f"{CONFIG} on {node}, readable by root there; rke2ha never prints it)"
    )


def files_fingerprint(files: NodeFiles) -> str:
    return fingerprint(sha256(files.config), sha256(files.authn) if files.authn else None)


def facts_fingerprint(facts: NodeFacts) -> str:
    return fingerprint(facts.config_sha, facts.authn_sha)


def facts_script(manifest_names: list[str]) -> str:
    """Prints the facts as key=value lines; reads only."""
    lines = [
        "bin=''",
        f'for b in {" ".join(BINARIES)}; do [ -x "$b" ] && bin=$b && break; done',
        'v=""; [ -n "$bin" ] && v=$("$bin" --version 2>/dev/null | head -n 1 | awk \'{print $3}\')',
        'echo "version=$v"',
        f'echo "config=$(sha256sum {CONFIG} 2>/dev/null | cut -d" " -f1)"',
        f'echo "authn=$(sha256sum {AUTHN} 2>/dev/null | cut -d" " -f1)"',
    ]
    for name in manifest_names:
        path = shlex.quote(f"{MANIFESTS}/{name}")
        lines.append(f'echo "manifest:{name}=$(sha256sum {path} 2>/dev/null | cut -d" " -f1)"')
    lines += [
        f'echo "enabled=$(systemctl is-enabled {UNIT} 2>/dev/null)"',
        f'echo "active=$(systemctl is-active {UNIT} 2>/dev/null)"',
        f'[ -d {ETCD_DATA} ] && echo "etcd=yes" || echo "etcd=no"',
        # A digest of the token line only: the token never leaves the node. (`if`, not `&&`:
        # without a config.yaml the script must still end with status 0.)
        f"if t=$(grep -m1 '^token:' {CONFIG} 2>/dev/null); then "
        "echo \"token=$(printf '%s\\n' \"$t\" | sed 's/[[:space:]]*$//' | sha256sum "
        '| cut -d" " -f1)"; fi',
    ]
    return "\n".join(lines)


def parse_facts(text: str) -> NodeFacts:
    values: dict[str, str] = {}
    manifests: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key.startswith("manifest:"):
            if value.strip():
                manifests[key[len("manifest:") :]] = value.strip()
        else:
            values[key] = value.strip()
    return NodeFacts(
        version=values.get("version") or None,
        config_sha=values.get("config") or None,
        authn_sha=values.get("authn") or None,
        manifest_shas=manifests,
        enabled=values.get("enabled") == "enabled",
        active=values.get("active") or "inactive",
        etcd_data=values.get("etcd") == "yes",
        token_sha=values.get("token") or None,
    )


def write_step(path: str, text: str, mode: str) -> Step:
    """Write `text` (from stdin) to `path` as root with `mode`, atomically: a temporary file
    beside it, made private before anything is written, then renamed over."""
    quoted, staged = shlex.quote(path), shlex.quote(path + ".rke2ha-new")
    folder = shlex.quote(path.rsplit("/", 1)[0])
    command = (
        f"umask 077 && mkdir -p {folder} && cat > {staged} && chown root:root {staged} && "
        f"chmod {mode} {staged} && mv -f {staged} {quoted}"
    )
    return Step("write", f"write {path} ({mode})", command)


def upgrade_refusal(node: str, installed: str, pinned: str) -> str:
    return (
        f"{node} runs RKE2 {installed}, the spec pins {pinned}: upgrades are not supported yet; "
        f"fix: set rke2.version: {installed} to keep it, or upgrade {node} by hand "
        "(https://docs.rke2.io/upgrades/manual_upgrade)"
    )


def foreign_refusal(node: str, facts: NodeFacts, files: NodeFiles, recorded: bool) -> str | None:
    """Why rke2ha must leave this node alone: RKE2 is installed there, rke2ha has no record of
    the node (someone else installed it), and its config differs from what rke2ha would
    write. Writing it would change, and restart, a server rke2ha did not create. A node that
    already matches (same release, same config) is adopted: nothing on it changes."""
    if facts.version is None or recorded or facts_fingerprint(facts) == files_fingerprint(files):
        return None
    return (
        f"{node} runs RKE2 {facts.version} that rke2ha did not install (no entry in the state "
        f"file) with another {CONFIG} than rke2ha would write; rke2ha never changes what it "
        f"did not create, so nothing is changed; fix: set rke2.install: none to leave that "
        f"RKE2 alone, or uninstall it on {node} first (rke2-uninstall.sh)"
    )


def up_steps(
    node: str,
    facts: NodeFacts,
    files: NodeFiles,
    version: str,
    upload: bool,
) -> list[Step]:
    """The steps that bring the node to: `version` installed, these files, the unit enabled
    and running. `upload` adds the upload and the on-node sum check before the install
    (whose command names the upload's folder, so the caller builds it:
    `airgap_install_command`, `online_install_command`). Files go in place before the first
    start, so the server never runs without them (the ingress config included)."""
    steps: list[Step] = []
    if facts.version is None:
        if upload:
            steps.append(Step("upload", "upload the RKE2 artifacts"))
            steps.append(Step("verify", "check the artifacts' sums on the node"))
        steps.append(Step("install", f"install RKE2 {version}"))
    elif facts.version != version:
        raise InvalidError(upgrade_refusal(node, facts.version, version))
    refused = token_refusal(node, facts, files)
    if refused:
        raise InvalidError(refused)
    changed = False
    if facts.config_sha != sha256(files.config):
        steps.append(_with_input(write_step(CONFIG, files.config, "0600"), files.config))
        changed = True
    if files.authn is not None and facts.authn_sha != sha256(files.authn):
        steps.append(_with_input(write_step(AUTHN, files.authn, "0600"), files.authn))
        changed = True
    for name, text in files.manifests.items():
        if facts.manifest_shas.get(name) != sha256(text):
            steps.append(_with_input(write_step(f"{MANIFESTS}/{name}", text, "0600"), text))
    if not facts.enabled:
        steps.append(Step("enable", f"systemctl enable {UNIT}", f"systemctl enable {UNIT}"))
    if not facts.running:
        steps.append(
            Step("start", f"start {UNIT} (--no-block)", f"systemctl start --no-block {UNIT}")
        )
    elif changed:
        steps.append(
            Step(
                "restart",
                f"restart {UNIT} for the new config (--no-block)",
                f"systemctl restart --no-block {UNIT}",
            )
        )
    return steps


def _with_input(step: Step, text: str) -> Step:
    return Step(step.kind, step.what, step.command, text)


def airgap_install_command(folder: str) -> str:
    return f"INSTALL_RKE2_ARTIFACT_PATH={shlex.quote(folder)} sh {shlex.quote(folder)}/install.sh"


def online_install_command(version: str, installer: str | None = None) -> str:
    """The node downloads the pinned release itself; install.sh from `installer` (a path on
    the node) or from get.rke2.io."""
    pinned = f"INSTALL_RKE2_VERSION={shlex.quote(version)}"
    if installer is not None:
        return f"{pinned} sh {shlex.quote(installer)}"
    return f"curl -sfL https://get.rke2.io | {pinned} sh -"


def uninstall_command() -> str:
    """rke2-uninstall.sh where install.sh put it (it stops RKE2 and deletes its data)."""
    found = " ".join(UNINSTALL)
    return (
        f'for u in {found}; do [ -x "$u" ] && exec "$u"; done; '
        "echo 'rke2-uninstall.sh not found' >&2; exit 3"
    )
