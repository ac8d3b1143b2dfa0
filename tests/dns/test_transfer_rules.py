"""`validate` on the built-in server's transfer key and NOTIFY list: real files, one
finding per problem naming the field and the fix; and `dns serve` refusing the same."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO
from tests.dns.conftest import BASE_SPEC, cli_env, serve_argv
from tests.support.specs import merge

from rke2ha.rules import evaluate
from rke2ha.specfile import load_spec

SECRET = base64.b64encode(b"rke2ha-transfer-key-32-bytes-ok!").decode()


def spec_with(tmp_path: Path, secret: str | None, mode: int = 0o600, **builtin: Any) -> Path:
    key_file = tmp_path / "xfr.secret"
    if secret is not None:
        key_file.write_text(secret + "\n")
        key_file.chmod(mode)
    builtin.setdefault("transfer_key", {"name": "xfr-key.", "key_file": "xfr.secret"})
    path = tmp_path / "rke2ha.yaml"
    path.write_text(yaml.safe_dump(merge(BASE_SPEC, {"dns": {"builtin": builtin}})))
    return path


def findings(path: Path) -> list[tuple[str, str, str]]:
    return [
        (f.path, str(f.severity), f.message)
        for f in evaluate(load_spec(path))
        if f.id == "dns.builtin_transfer"
    ]


def test_a_good_key_and_notify_list_pass(tmp_path: Path) -> None:
    assert findings(spec_with(tmp_path, SECRET, notify=["127.0.231.2", "[::1]:5353"])) == []


@pytest.mark.parametrize(
    ("secret", "mode", "expected"),
    [
        (None, 0o600, "does not exist"),
        (SECRET, 0o644, "readable by others (mode 644)"),
        ("not base64 at all!", 0o600, "is not base64"),
    ],
)
def test_key_file_problems(tmp_path: Path, secret: str | None, mode: int, expected: str) -> None:
    [(field, severity, message)] = findings(spec_with(tmp_path, secret, mode))
    assert field == "dns.builtin.transfer_key.key_file" and severity == "error"
    assert expected in message and SECRET not in message


def test_bad_notify_entries_are_named(tmp_path: Path) -> None:
    path = spec_with(tmp_path, SECRET, notify=["127.0.231.2", "ns2.example.com", "127.0.0.1:0"])
    assert [f[0] for f in findings(path)] == ["dns.builtin.notify[1]", "dns.builtin.notify[2]"]


def test_notify_without_any_way_to_transfer_is_a_warning(tmp_path: Path) -> None:
    path = spec_with(tmp_path, None, notify=["127.0.231.2"], transfer_key=None)
    assert findings(path) == [
        (
            "dns.builtin.notify",
            "warning",
            "the notified secondaries cannot transfer the zone: axfr_allow is empty and "
            "there is no transfer_key",
        )
    ]


@pytest.mark.parametrize(
    ("secret", "mode", "expected"),
    [
        (SECRET, 0o644, "is readable by others"),
        ("not base64 at all!", 0o600, "the TSIG secret is not base64"),
    ],
)
def test_dns_serve_refuses_a_bad_key_file(
    tmp_path: Path, secret: str, mode: int, expected: str
) -> None:
    path = spec_with(tmp_path, secret, mode)
    result = subprocess.run(
        serve_argv(path, "127.0.231.1:0"),
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert expected in line and "Traceback" not in result.stderr and SECRET not in line


def test_the_existing_engines_spec_copy_names_the_key_file_absolutely(tmp_path: Path) -> None:
    """The built-in engine's copy of the spec lives elsewhere: a relative key_file would
    point nowhere from there (as dns.rfc2136.key_file, it is made absolute)."""
    from rke2ha.providers.existing.builtin import CONFIG_PATHS, builtin_version

    spec = load_spec(spec_with(tmp_path, SECRET))
    copy = builtin_version(spec).files.files[CONFIG_PATHS["builtin"]].text
    key = yaml.safe_load(copy)["dns"]["builtin"]["transfer_key"]
    assert key["key_file"] == str(tmp_path / "xfr.secret") and SECRET not in copy


@pytest.mark.parametrize(
    "name",
    ['k"; }; include "/etc/x', "xfr\nkey.", "a..b.", "x" * 64 + ".", "key name."],
)
def test_a_key_name_that_is_not_a_dns_name_is_refused_before_any_config(
    tmp_path: Path, name: str
) -> None:
    # It goes between quotes into named.conf (render) and through dnspython (dns serve):
    # a quote or line break would inject config, a bad label would crash the server.
    path = spec_with(tmp_path, SECRET, transfer_key={"name": name, "key_file": "xfr.secret"})
    done = subprocess.run(
        [sys.executable, "-m", "rke2ha", "validate", "-f", str(path)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dns.builtin.transfer_key.name" in done.stdout + done.stderr
    assert "is not a TSIG key name" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
