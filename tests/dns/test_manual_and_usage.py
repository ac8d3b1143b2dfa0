"""`dns publish` with provider manual prints the records; usage errors exit 2, clearly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult


def test_manual_prints_the_exact_records(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult]
) -> None:
    spec = write_spec({"dns": {"provider": "manual"}})
    result = run_cli("dns", "publish", "-f", str(spec))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "rancher.example.com. 60 IN A 127.0.20.10" in lines
    assert '_rke2ha.rancher.example.com. 60 IN TXT "heritage=rke2ha,rke2ha/cluster=prod"' in lines
    as_json = json.loads(run_cli("dns", "unpublish", "-f", str(spec), "--json").out)
    assert as_json["action"] == "delete" and as_json["changed"] is False
    assert as_json["records"][0] == {
        "name": "rancher.example.com.",
        "type": "A",
        "ttl": 60,
        "values": ["127.0.20.10"],
    }


def test_usage_errors(write_spec: Callable[..., Path], run_cli: Callable[..., CliResult]) -> None:
    builtin = run_cli("dns", "publish", "-f", str(write_spec()))
    assert builtin.code == 2 and "dns.provider is builtin" in builtin.err
    bad_listen = run_cli("dns", "serve", "-f", str(write_spec()), "--listen", "127.0.20.1:99999")
    assert bad_listen.code == 2 and "--listen" in bad_listen.err
    outside = write_spec({"hostname": "rancher.example.org"})
    result = run_cli("dns", "serve", "-f", str(outside), "--listen", "127.0.20.1:0")
    assert result.code == 1 and "is not inside dns.zone" in result.err
    for err in (builtin.err, bad_listen.err, result.err):
        assert "Traceback" not in err
