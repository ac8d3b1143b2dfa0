"""`rke2ha dns publish/unpublish` with provider rfc2136 against a real BIND `named`.

named is started by the `named` fixture on 127.0.0.1 (ephemeral port) with a TSIG key
(hmac-sha256) and a dynamic zone example.com; records are read back with dnspython queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest
from tests.conftest import CliResult
from tests.dns.conftest import TSIG_SECRET, WRONG_SECRET, Named

HOST = "rancher.example.com."
OWNER = "_rke2ha.rancher.example.com."
OUR_TXT = '"heritage=rke2ha,rke2ha/cluster=prod"'


def rfc2136_spec(
    write_spec: Callable[..., Path], named: Named, key_file: Path | None = None, **extra: Any
) -> Path:
    block = {
        "server": named.host,
        "port": named.port,
        "key_name": "rke2ha-key.",
        "key_file": str(key_file or named.key_file),
    }
    dns_block = {"provider": "rfc2136", "rfc2136": block, **extra.pop("dns", {})}
    return write_spec({"dns": dns_block, **extra})


def records(named: Named, name: str, rdtype: str) -> list[str]:
    response = dns.query.tcp(
        dns.message.make_query(name, rdtype), named.host, port=named.port, timeout=5
    )
    assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    return sorted(
        rdata.to_text()
        for rrset in response.answer
        if rrset.name.to_text() == name and dns.rdatatype.to_text(rrset.rdtype) == rdtype
        for rdata in rrset
    )


def stranger_update(named: Named, *changes: tuple[str, str, str]) -> None:
    """Someone else (same server, same key) adds records: (name, type, value)."""
    keyring = {dns.name.from_text("rke2ha-key."): dns.tsig.Key("rke2ha-key.", TSIG_SECRET)}
    update = dns.update.UpdateMessage("example.com", keyring=keyring)
    for name, rdtype, value in changes:
        update.add(name, 300, rdtype, value)
    response = dns.query.tcp(update, named.host, port=named.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR


def publish(run_cli: Callable[..., CliResult], spec: Path, *flags: str) -> CliResult:
    return run_cli("dns", "publish", "-f", str(spec), *flags)


def test_publish_then_republish_is_no_change(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    spec = rfc2136_spec(write_spec, named)
    first = publish(run_cli, spec, "--json")
    assert first.code == 0, first.err
    outcome = json.loads(first.out)
    assert outcome["action"] == "create" and outcome["changed"] is True
    assert records(named, HOST, "A") == ["127.0.20.10"]
    assert records(named, OWNER, "TXT") == [OUR_TXT]
    again = publish(run_cli, spec, "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["action"] == "none"
    assert json.loads(again.out)["changed"] is False
    text = publish(run_cli, spec)
    assert "already published; nothing changed" in text.out


def test_changed_spec_updates_our_record(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    assert publish(run_cli, rfc2136_spec(write_spec, named)).code == 0
    moved = rfc2136_spec(
        write_spec, named, load_balancer={"address": "127.0.20.11", "extra_addresses": ["::1"]}
    )
    result = publish(run_cli, moved)
    assert result.code == 0, result.err
    assert result.out.startswith("updated rancher.example.com.")
    assert records(named, HOST, "A") == ["127.0.20.11"]
    assert records(named, HOST, "AAAA") == ["::1"]
    # A switch to CNAME replaces the addresses in the same atomic update.
    cname = rfc2136_spec(
        write_spec, named, load_balancer={"address": "lb.example.net"}, dns={"record": "CNAME"}
    )
    assert publish(run_cli, cname).code == 0
    assert records(named, HOST, "CNAME") == ["lb.example.net."]
    assert records(named, HOST, "A") == [] and records(named, HOST, "AAAA") == []


def test_someone_elses_record_is_left_untouched_and_reported(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    stranger_update(named, (HOST, "A", "192.0.2.7"))
    spec = rfc2136_spec(write_spec, named)
    result = publish(run_cli, spec)
    assert result.code == 1
    assert "192.0.2.7" in result.err and "left untouched" in result.err
    assert "--adopt" in result.err and "Traceback" not in result.err
    as_json = publish(run_cli, spec, "--json")
    assert as_json.code == 1
    report = json.loads(as_json.out)
    assert report["action"] == "refused" and report["ownership"] == "foreign"
    assert records(named, HOST, "A") == ["192.0.2.7"]
    assert records(named, OWNER, "TXT") == []
    # unpublish does not touch it either.
    removed = run_cli("dns", "unpublish", "-f", str(spec))
    assert removed.code == 1 and "left untouched" in removed.err
    assert records(named, HOST, "A") == ["192.0.2.7"]


def test_another_clusters_marker_is_refused(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    stranger_update(
        named,
        (HOST, "A", "192.0.2.8"),
        (OWNER, "TXT", '"heritage=rke2ha,rke2ha/cluster=staging"'),
    )
    result = publish(run_cli, rfc2136_spec(write_spec, named), "--json")
    assert result.code == 1
    assert json.loads(result.out)["ownership"] == "other-cluster"
    assert records(named, HOST, "A") == ["192.0.2.8"]


def test_adopt_takes_over_on_purpose(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    stranger_update(named, (HOST, "A", "192.0.2.7"), (HOST, "A", "192.0.2.9"))
    result = publish(run_cli, rfc2136_spec(write_spec, named), "--adopt")
    assert result.code == 0, result.err
    assert result.out.startswith("adopted rancher.example.com.")
    assert records(named, HOST, "A") == ["127.0.20.10"]
    assert records(named, OWNER, "TXT") == [OUR_TXT]


def test_unpublish_removes_only_our_two_records(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    spec = rfc2136_spec(write_spec, named)
    assert publish(run_cli, spec).code == 0
    # Other people's records at and beside our names stay.
    stranger_update(
        named,
        (HOST, "MX", "10 ns1.example.com."),
        ("other.example.com.", "A", "192.0.2.1"),
    )
    result = run_cli("dns", "unpublish", "-f", str(spec), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["action"] == "delete"
    assert records(named, HOST, "A") == []
    assert records(named, OWNER, "TXT") == []
    assert records(named, HOST, "MX") == ["10 ns1.example.com."]
    assert records(named, "other.example.com.", "A") == ["192.0.2.1"]
    assert records(named, "ns1.example.com.", "A") == [named.host]
    again = run_cli("dns", "unpublish", "-f", str(spec))
    assert again.code == 0 and "nothing published" in again.out


def test_wrong_tsig_secret_is_a_clear_error(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text(WRONG_SECRET)
    wrong.chmod(0o600)
    result = publish(run_cli, rfc2136_spec(write_spec, named, key_file=wrong))
    assert result.code == 1
    assert "BADSIG" in result.err and "key_file" in result.err
    assert "Traceback" not in result.err and WRONG_SECRET not in result.err
    assert records(named, HOST, "A") == []


def test_unknown_key_name_is_a_clear_error(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    spec = rfc2136_spec(write_spec, named)
    spec.write_text(spec.read_text().replace("key_name: rke2ha-key.", "key_name: nobody."))
    result = publish(run_cli, spec)
    assert result.code == 1
    assert "BADKEY" in result.err and "Traceback" not in result.err


def test_secret_readable_by_others_is_refused(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    named.key_file.chmod(0o644)
    result = publish(run_cli, rfc2136_spec(write_spec, named))
    assert result.code == 1
    assert "chmod 600" in result.err and TSIG_SECRET not in result.err


def test_server_that_refuses_is_an_error_not_an_empty_zone(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult]
) -> None:
    # A zone this server does not serve: BIND answers REFUSED, which must not read as empty.
    spec = rfc2136_spec(
        write_spec, named, hostname="rancher.other.test", dns={"zone": "other.test"}
    )
    result = publish(run_cli, spec)
    assert result.code == 1
    assert "REFUSED" in result.err and "never taken for an empty zone" in result.err


@pytest.mark.parametrize("command", ["publish", "unpublish"])
def test_unreachable_server_is_an_error(
    write_spec: Callable[..., Path], named: Named, run_cli: Callable[..., CliResult], command: str
) -> None:
    spec = rfc2136_spec(write_spec, named)
    spec.write_text(spec.read_text().replace(f"port: {named.port}", "port: 1"))
    result = run_cli("dns", command, "-f", str(spec))
    assert result.code == 1 and "Traceback" not in result.err
    assert f"{named.host}:1" in result.err
