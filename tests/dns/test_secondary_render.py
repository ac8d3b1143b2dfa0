"""`rke2ha render` writes dns/named-secondary.conf when the built-in server has a transfer
key: BIND's named-checkconf accepts it once the secret is put in, and the secret itself is
never in it. (tests/dns/test_secondary_bind.py runs a real secondary from it.)"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.dns.conftest import BASE_SPEC
from tests.support.specs import merge

from rke2ha.render.dnszone import dns_files
from rke2ha.spec import Spec

SECRET = base64.b64encode(b"rke2ha-transfer-key-32-bytes-ok!").decode()


def spec(tmp_path: Path, **builtin: Any) -> Spec:
    key_file = tmp_path / "xfr.secret"
    key_file.write_text(SECRET)
    key_file.chmod(0o600)
    builtin.setdefault(
        "transfer_key", {"name": "xfr-key.", "algorithm": "hmac-sha512", "key_file": str(key_file)}
    )
    return Spec.model_validate(merge(BASE_SPEC, {"dns": {"builtin": builtin}}))


def test_no_key_no_file(tmp_path: Path) -> None:
    assert "dns/named-secondary.conf" not in dns_files(spec(tmp_path, transfer_key=None), "s.yaml")


@pytest.mark.parametrize(
    ("listen", "primary"),
    [("127.0.231.1:5353", "127.0.231.1 port 5353"), (None, "192.0.2.53 port 53")],
)
def test_named_checkconf_accepts_it(tmp_path: Path, listen: str | None, primary: str) -> None:
    if shutil.which("named-checkconf") is None:
        pytest.skip("BIND named-checkconf is not installed (apt-get install bind9)")
    text = dns_files(spec(tmp_path, listen=listen), "s.yaml")["dns/named-secondary.conf"]
    assert SECRET not in text
    assert 'key "xfr-key." { algorithm hmac-sha512; secret "SECRET"; };' in text
    assert f'primaries {{ {primary} key "xfr-key."; }};' in text
    assert ("TEST-NET-1" in text) is (listen is None)
    conf = tmp_path / "named.conf"
    conf.write_text(text.replace('"SECRET"', f'"{SECRET}"'))
    result = subprocess.run(
        ["named-checkconf", str(conf)], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
