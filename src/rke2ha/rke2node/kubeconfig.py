"""The cluster's kubeconfig: RKE2's `rke2.yaml` rewritten for use from outside, and merged.

RKE2 writes `/etc/rancher/rke2/rke2.yaml` on each server, readable by root only, with the
cluster, user and context all named `default` and the server `https://127.0.0.1:6443`
(https://docs.rke2.io/cluster_access). From the workstation the server is the Rancher
hostname through the load balancer, which every server's certificate carries in `tls-san`;
names become the spec's name so the file merges beside other clusters.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rke2ha.errors import InvalidError


@dataclass(frozen=True)
class Credentials:
    """What a client needs to talk to the apiserver as the kubeconfig's user (PEM bytes)."""

    ca: bytes
    cert: bytes
    key: bytes


def _load(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidError(f"{where}: not a kubeconfig ({err})") from None
    if not isinstance(data, dict):
        raise InvalidError(f"{where}: not a kubeconfig (no mapping)")
    return data


def _first(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    items = data.get(key) or []
    if not items or not isinstance(items[0], dict):
        raise InvalidError(f"{where}: the kubeconfig has no {key}")
    return items[0]


def credentials(text: str, where: str) -> Credentials:
    """The CA and client certificate of RKE2's rke2.yaml (base64 `-data` fields)."""
    data = _load(text, where)
    cluster = _first(data, "clusters", where).get("cluster") or {}
    user = _first(data, "users", where).get("user") or {}
    try:
        return Credentials(
            base64.b64decode(cluster["certificate-authority-data"]),
            base64.b64decode(user["client-certificate-data"]),
            base64.b64decode(user["client-key-data"]),
        )
    except (KeyError, ValueError) as err:
        raise InvalidError(f"{where}: the kubeconfig lacks {err}") from None


def rewrite(text: str, name: str, hostname: str, where: str) -> str:
    """rke2.yaml with one cluster, user and context named `name`, server https://hostname:6443."""
    data = _load(text, where)
    cluster = dict(_first(data, "clusters", where).get("cluster") or {})
    user = dict(_first(data, "users", where).get("user") or {})
    cluster["server"] = f"https://{hostname}:6443"
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=False)


def merge(existing: str | None, ours: str, name: str) -> str:
    """`existing` (~/.kube/config) with our cluster, user and context put in by name: every
    other entry and the current context are kept; ours replace entries named `name`."""
    base = _load(existing, "~/.kube/config") if existing and existing.strip() else {}
    new = _load(ours, "kubeconfig")
    merged = dict(base) or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for key in ("clusters", "users", "contexts"):
        kept = [
            e for e in (base.get(key) or []) if not (isinstance(e, dict) and e.get("name") == name)
        ]
        merged[key] = [*kept, *(new.get(key) or [])]
    merged.setdefault("current-context", name)
    if not merged.get("current-context"):
        merged["current-context"] = name
    return yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)


def has_context(text: str, name: str) -> bool:
    """Whether the kubeconfig `text` holds a context named `name` (a file that is not a
    kubeconfig holds none)."""
    try:
        data = _load(text, "kubeconfig")
    except InvalidError:
        return False
    contexts = data.get("contexts") or []
    return any(isinstance(c, dict) and c.get("name") == name for c in contexts)


def write_private(path: Path, text: str) -> None:
    """Write `text` mode 0600 (it holds a client key), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staged = path.with_name(path.name + ".rke2ha-new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(staged, 0o600)
    os.replace(staged, path)
