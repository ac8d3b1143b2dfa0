"""RKE2's rke2.yaml rewritten for the workstation, and merged into ~/.kube/config."""

from __future__ import annotations

import base64
import stat

import yaml

from rke2ha.rke2node.kubeconfig import credentials, merge, rewrite, write_private


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


RKE2_YAML = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {_b64("CA")}
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {_b64("CERT")}
    client-key-data: {_b64("KEY")}
"""


def test_rewrite_points_at_the_hostname_and_names_everything_after_the_spec():
    out = yaml.safe_load(rewrite(RKE2_YAML, "prod", "rancher.example.com", "x"))
    assert out["clusters"][0]["cluster"]["server"] == "https://rancher.example.com:6443"
    assert [c["name"] for c in out["contexts"]] == ["prod"]
    assert out["contexts"][0]["context"] == {"cluster": "prod", "user": "prod"}
    assert out["current-context"] == "prod"
    creds = credentials(RKE2_YAML, "x")
    assert (creds.ca, creds.cert, creds.key) == (b"CA", b"CERT", b"KEY")


def test_merge_keeps_other_contexts_and_the_current_one_and_replaces_ours():
    ours = rewrite(RKE2_YAML, "prod", "rancher.example.com", "x")
    home = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "other", "cluster": {"server": "https://o:6443"}},
                {"name": "prod", "cluster": {"server": "https://old:6443"}},
            ],
            "users": [{"name": "other", "user": {"token": "t"}}],
            "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
            "current-context": "other",
        }
    )
    merged = yaml.safe_load(merge(home, ours, "prod"))
    assert [c["name"] for c in merged["clusters"]] == ["other", "prod"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://rancher.example.com:6443"
    assert [c["name"] for c in merged["contexts"]] == ["other", "prod"]
    assert merged["users"][0] == {"name": "other", "user": {"token": "t"}}
    assert merged["current-context"] == "other"
    fresh = yaml.safe_load(merge(None, ours, "prod"))
    assert fresh["current-context"] == "prod"


def test_written_private(tmp_path):
    path = tmp_path / "sub" / "k"
    write_private(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "x"
