"""Rule `files`: local files the spec names, checked by `validate` as `plan`/`up` use them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from .conftest import of


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _pair(base: dict[str, Any]) -> dict[str, Any]:
    base["load_balancer"]["hosts"] = [
        {"name": "lb1", "address": "10.0.0.1"},
        {"name": "lb2", "address": "10.0.0.2"},
    ]
    base["load_balancer"]["vrrp"] = {"auth_file": "vrrp.pass"}
    base["ssh"] = {"user": "root"}
    return base


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        (None, 0o600, "does not exist"),
        ("secret1\n", 0o644, "readable by others (mode 644)"),
        ("\n", 0o600, "is empty"),
        ("ab#cd\n", 0o600, "space, quote, # or !"),
    ],
)
def test_vrrp_auth_file(tmp_path, base, findings, content, mode, words) -> None:
    if content is not None:
        _write(tmp_path / "vrrp.pass", content, mode)
    errors = of(findings(_pair(base)), "files", "error")
    assert [f.path for f in errors] == ["load_balancer.vrrp.auth_file"]
    assert words in errors[0].message
    assert "secret1" not in errors[0].message.replace(str(tmp_path), "")


def test_a_vrrp_password_over_eight_characters_is_a_warning(tmp_path, base, findings) -> None:
    # keepalived and the render use its first 8 characters on both hosts: it works, but the
    # rest protects nothing.
    _write(tmp_path / "vrrp.pass", "abcdefghij\n")
    found = of(findings(_pair(base)), "files")
    assert [(f.path, f.severity) for f in found] == [("load_balancer.vrrp.auth_file", "warning")]
    assert "is 10 characters; keepalived's PASS authentication uses only" in found[0].message


def test_vrrp_auth_file_of_eight_characters_passes(tmp_path, base, findings) -> None:
    _write(tmp_path / "vrrp.pass", "abcdefgh\n")
    assert of(findings(_pair(base)), "files") == []


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ("tok\n\nsecondline\n", 0o600, "more than one line"),
        ("tok\n", 0o644, "readable by others"),
        ("  \n", 0o600, "is empty"),
        (b"\xff\xfe", 0o600, "not UTF-8"),
        ("dir", 0o700, "not a regular file"),
    ],
)
def test_token_file_that_exists(tmp_path, base, findings, content, mode, words) -> None:
    path = tmp_path / "tok"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(mode)
    base["rke2"]["token_file"] = "tok"
    errors = of(findings(base), "files", "error")
    assert [f.path for f in errors] == ["rke2.token_file"] and words in errors[0].message
    assert "secondline" not in errors[0].message.replace(str(tmp_path), "")


def test_missing_token_file_is_made_by_up(tmp_path, base, findings) -> None:
    base["rke2"]["token_file"] = "tok"
    assert of(findings(base), "files") == []
    _write(tmp_path / "tok", "tok\n")
    assert of(findings(base), "files") == []


def _release(folder: Path, images: bytes = b"images") -> None:
    folder.mkdir()
    tar = b"tarball"
    (folder / "install.sh").write_text("#!/bin/sh\n")
    (folder / "rke2.linux-amd64.tar.gz").write_bytes(tar)
    (folder / "rke2-images.linux-amd64.tar.zst").write_bytes(images)
    (folder / "sha256sum-amd64.txt").write_text(
        f"{hashlib.sha256(tar).hexdigest()}  rke2.linux-amd64.tar.gz\n"
        f"{hashlib.sha256(b'images').hexdigest()}  rke2-images.linux-amd64.tar.zst\n"
    )


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda folder: None, "does not exist"),
        (lambda folder: folder.mkdir(), "install.sh, rke2.linux-amd64.tar.gz"),
        (lambda folder: _release(folder, images=b"other"), "does not match sha256sum-amd64.txt"),
    ],
)
def test_airgap_artifacts(tmp_path, base, findings, setup, words) -> None:
    setup(tmp_path / "art")
    base["rke2"].update(install="airgap", version="v1.33.6+rke2r1", airgap={"artifacts": "art"})
    base["ssh"] = {"user": "root"}
    errors = of(findings(base), "files", "error")
    assert [f.path for f in errors] == ["rke2.airgap.artifacts"] and words in errors[0].message


def test_complete_airgap_release_passes(tmp_path, base, findings) -> None:
    _release(tmp_path / "art")
    base["rke2"].update(install="airgap", version="v1.33.6+rke2r1", airgap={"artifacts": "art"})
    base["ssh"] = {"user": "root"}
    assert of(findings(base), "files") == []


def test_ssh_identity_files(tmp_path, base, findings) -> None:
    base["ssh"] = {"identity_file": "id_missing"}
    base["nodes"][1]["ssh"] = {"identity_file": "id_node"}
    _write(tmp_path / "id_node", "key\n")
    errors = of(findings(base), "files", "error")
    assert [f.path for f in errors] == ["ssh.identity_file"]
    assert "does not exist" in errors[0].message


def test_readable_tsig_and_tls_keys_are_errors(tmp_path, base, findings, make_cert) -> None:
    _write(tmp_path / "tsig", "c2VjcmV0\n", 0o644)
    base["dns"] = {
        "provider": "rfc2136",
        "zone": "example.com",
        "rfc2136": {"server": "10.0.0.53", "key_name": "k.", "key_file": "tsig"},
    }
    cert, key = make_cert(names=["rancher.example.com"])
    key.chmod(0o644)
    base["load_balancer"].update(layer=7, tls={"cert": str(cert), "key": str(key)})
    found = findings(base)
    assert [f.path for f in of(found, "provider", "error")] == ["dns.rfc2136.key_file"]
    assert [f.path for f in of(found, "lb.layer7_tls", "error")] == ["load_balancer.tls.key"]
