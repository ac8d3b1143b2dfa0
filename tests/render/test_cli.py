"""`rke2ha render` as a user runs it: files listed, --json, exit codes, same bytes twice."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult
from tests.render.helpers import SpecFactory

Cli = Callable[..., CliResult]


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_render_writes_and_lists_files(specs: SpecFactory, tmp_path: Path, run_cli: Cli) -> None:
    spec_file = specs.write({})
    out = tmp_path / "out"
    result = run_cli("render", "-f", str(spec_file), "-o", str(out))
    assert result.code == 0, result.err
    listed = result.out.splitlines()
    expected = [
        "dns/example.com.zone",
        "dns/nsupdate.txt",
        "haproxy/haproxy.cfg",
        "nginx/nginx.conf",
        "rancher/install.sh",
        "rancher/values.yaml",
        "rke2/node-1/authentication-config.yaml",
        "rke2/node-1/config.yaml",
    ]
    for relative in expected:
        assert any(line.startswith(f"{out}/{relative}") for line in listed), relative
        assert (out / relative).is_file()
    assert f"{out}/rke2/node-2/config.yaml  (0600: holds a secret)" in listed
    token = (tmp_path / ".rke2ha/secrets/rancher-rke2-token").read_text().strip()
    assert token not in result.out + result.err


def test_render_json_and_same_bytes(specs: SpecFactory, tmp_path: Path, run_cli: Cli) -> None:
    spec_file = specs.write(specs.tls())
    one, two = tmp_path / "one", tmp_path / "two"
    first = run_cli("render", "-f", str(spec_file), "-o", str(one), "--json")
    assert first.code == 0, first.err
    document = json.loads(first.out)
    assert document["ok"] is True
    assert f"{one}/haproxy/haproxy.cfg" in document["files"]
    assert f"{one}/haproxy/tls/rancher.example.com.pem" in document["secret_files"]
    assert document["skipped"] == []
    second = run_cli("render", "-f", str(spec_file), "-o", str(two), "--json")
    assert second.code == 0
    assert tree(one) == tree(two)  # same spec, same bytes (and modes)
    # and rendering over an existing output changes nothing
    assert run_cli("render", "-f", str(spec_file), "-o", str(one)).code == 0
    assert tree(one) == tree(two)


def test_missing_spec_is_usage_error(tmp_path: Path, run_cli: Cli) -> None:
    result = run_cli("render", "-f", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "out"))
    assert result.code == 2
    assert "Traceback" not in result.err and "nope.yaml" in result.err
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_folder(specs: SpecFactory, tmp_path: Path, run_cli: Cli) -> None:
    spec_file = specs.write({})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("render", "-f", str(spec_file), "-o", str(blocker))
    assert result.code == 2
    assert "not a folder" in result.err and "Traceback" not in result.err


def test_invalid_spec_renders_nothing_unless_forced(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    spec_file = specs.write({"nodes": [{"name": "node-1", "address": "10.0.1.11"}]})
    out = tmp_path / "out"
    result = run_cli("render", "-f", str(spec_file), "-o", str(out))
    assert result.code == 1
    assert "nodes.count" in result.err and "Traceback" not in result.err
    assert not out.exists()
    forced = run_cli("render", "-f", str(spec_file), "-o", str(out), "--force")
    assert forced.code == 0, forced.err
    assert (out / "rke2/node-1/config.yaml").is_file()


def test_unassigned_addresses_are_skipped_with_reason(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    spec_file = specs.write(
        {
            "provider": "aws",
            "region": "us-east-1",
            "nodes": [{"name": f"node-{i}", "zone": f"us-east-1{z}"} for i, z in enumerate("abc")],
            "load_balancer": {"engine": "aws-nlb", "address": None},
            "dns": {"provider": "route53", "rfc2136": None},
            "aws": {
                "region": "us-east-1",
                "ami": "ami-0123456789abcdef0",
                "rke2_version": "v1.33.6+rke2r1",
            },
        }
    )
    out = tmp_path / "out"
    result = run_cli("render", "-f", str(spec_file), "-o", str(out), "--json", "--force")
    assert result.code == 0, result.err
    skipped = {item["path"]: item["reason"] for item in json.loads(result.out)["skipped"]}
    assert set(skipped) == {
        f"{out}/haproxy/haproxy.cfg",
        f"{out}/nginx/nginx.conf",
        f"{out}/dns/example.com.zone",
        f"{out}/dns/nsupdate.txt",
    }
    assert all("rke2ha up" in reason for reason in skipped.values())
    assert (out / "rke2/node-0/config.yaml").is_file()


def test_render_keeps_the_state_s_drained_nodes_down_in_nginx_conf(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    from rke2ha.state import StateStore

    spec_file = specs.write({})
    out = tmp_path / "out"
    store = StateStore(tmp_path / ".rke2ha", "rancher")
    state = store.load_or_new("existing")
    state.drained = ["node-2"]
    store.save(state)
    result = run_cli("render", "-f", str(spec_file), "-o", str(out))
    assert result.code == 0, result.err
    assert "note: nginx/nginx.conf keeps node-2 down (`rke2ha lb drain`" in result.err
    conf = (out / "nginx/nginx.conf").read_text()
    assert conf.count(" down;") == 4 and conf.count("10.0.2.11:") == 4
    assert " down;" not in (out / "haproxy/haproxy.cfg").read_text()
    state.drained = []
    store.save(state)
    again = run_cli("render", "-f", str(spec_file), "-o", str(tmp_path / "out2"))
    assert again.code == 0 and "keeps" not in again.err
    assert " down;" not in (tmp_path / "out2/nginx/nginx.conf").read_text()


def test_rerender_removes_the_earlier_renders_files_only(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    out = tmp_path / "reuse"
    assert run_cli("render", "-f", str(specs.write(specs.tls())), "-o", str(out)).code == 0
    key = out / "nginx/tls/rancher.example.com.key"
    ingress = out / "rancher/ingress-helmchartconfig.yaml"
    assert key.is_file() and ingress.is_file()
    (out / "nginx/tls/mine.txt").write_text("not rke2ha's\n")  # someone else's file
    layer4 = run_cli("render", "-f", str(specs.write({})), "-o", str(out), "--json")
    assert layer4.code == 0, layer4.err
    removed = json.loads(layer4.out)["removed"]
    assert str(key) in removed and str(ingress) in removed
    assert str(out / "haproxy/tls/rancher.example.com.pem") in removed
    assert not key.exists() and not ingress.exists()
    assert not (out / "haproxy/tls").exists()  # left empty, removed
    assert (out / "nginx/tls/mine.txt").read_text() == "not rke2ha's\n"
    fresh = tmp_path / "fresh"
    assert run_cli("render", "-f", str(specs.write({})), "-o", str(fresh)).code == 0
    assert {k: v for k, v in tree(out).items() if k != "nginx/tls/mine.txt"} == tree(fresh)
    listed = json.loads((out / ".rke2ha-render.json").read_text())["files"]
    assert "haproxy/haproxy.cfg" in listed and "nginx/tls/rancher.example.com.key" not in listed
    text = run_cli("render", "-f", str(specs.write(specs.tls())), "-o", str(out))
    again = run_cli("render", "-f", str(specs.write({})), "-o", str(out))
    assert text.code == again.code == 0
    assert f"removed {key} (an earlier render wrote it; this spec does not)" in again.err


def test_a_manifest_never_removes_files_outside_the_folder(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep\n")
    manifest = {"generator": "rke2ha render", "files": ["../precious.txt", str(outside)]}
    (out / ".rke2ha-render.json").write_text(json.dumps(manifest))
    result = run_cli("render", "-f", str(specs.write({})), "-o", str(out))
    assert result.code == 0, result.err
    assert outside.read_text() == "keep\n" and "removed" not in result.err


def test_a_folder_no_render_wrote_is_refused_unless_forced(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    spec_file = specs.write({})
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    refused = run_cli("render", "-f", str(spec_file), "-o", str(out))
    assert refused.code == 2 and "Traceback" not in refused.err
    assert "the folder is not empty and no earlier `rke2ha render` wrote it" in refused.err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    forced = run_cli("render", "-f", str(spec_file), "-o", str(out), "--force")
    assert forced.code == 0, forced.err
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "haproxy/haproxy.cfg").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("render", "-f", str(spec_file), "-o", str(empty)).code == 0


def test_empty_out_is_a_usage_error(specs: SpecFactory, tmp_path: Path, run_cli: Cli) -> None:
    spec_file = specs.write({})
    work = tmp_path / "cwd"
    work.mkdir()
    result = run_cli("render", "-f", str(spec_file), "-o", "", cwd=work)
    assert result.code == 2 and "-o/--out is empty" in result.err
    assert list(work.iterdir()) == [] and result.out == ""


def test_created_secrets_are_announced_never_shown(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    spec_file = specs.write({"rke2": {"token_file": "typo.tok"}})
    first = run_cli("render", "-f", str(spec_file), "-o", str(tmp_path / "one"), cwd=tmp_path)
    assert first.code == 0, first.err
    token = (tmp_path / "typo.tok").read_text().strip()
    assert stat.S_IMODE((tmp_path / "typo.tok").stat().st_mode) == 0o600
    assert "rke2ha: created RKE2 token typo.tok (0600)" in first.err.splitlines()
    password = ".rke2ha/secrets/rancher-bootstrap-password"
    assert f"rke2ha: created Rancher bootstrap password {password} (0600)" in first.err
    assert token not in first.out + first.err
    again = run_cli("render", "-f", str(spec_file), "-o", str(tmp_path / "two"), cwd=tmp_path)
    assert again.code == 0 and "created" not in again.err
    assert (tmp_path / "typo.tok").read_text().strip() == token
