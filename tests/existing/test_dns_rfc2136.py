"""Provider existing publishing through a real BIND primary (RFC 2136 with TSIG): the record
appears with `up`, only records we own are touched, and `down` removes exactly ours."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
from tests.existing.conftest import (
    HOSTNAME,
    LB,
    TSIG_SECRET,
    ZONE,
    Deployment,
    Named,
    existing_spec,
)


def _spec(named: Named) -> dict[str, Any]:
    rfc2136 = {
        "server": named.host,
        "port": named.port,
        "key_name": "rke2ha-key.",
        "key_file": str(named.key_file),
    }
    return existing_spec("haproxy", dns={"provider": "rfc2136", "rfc2136": rfc2136})


def _answer(named: Named, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, named.host, port=named.port, timeout=2)
    return [item.to_text() for rrset in response.answer for item in rrset]


def test_up_publishes_and_down_unpublishes(named: Named, deployment: Deployment) -> None:
    deployment.write(_spec(named))
    up = deployment.cli("up", "--yes")
    assert up.code == 0, up.err
    assert _answer(named, HOSTNAME, "A") == [LB]
    assert _answer(named, f"_rke2ha.{HOSTNAME}", "TXT") == [
        '"heritage=rke2ha,rke2ha/cluster=onprem"'
    ]
    # The record is read back from the zone: nothing left to do.
    plan = deployment.cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err

    down = deployment.cli("down", "--yes")
    assert down.code == 0, down.err
    assert _answer(named, HOSTNAME, "A") == []
    assert _answer(named, f"_rke2ha.{HOSTNAME}", "TXT") == []
    assert deployment.our_processes() == []


def test_someone_elses_record_stops_up_before_anything_starts(
    named: Named, deployment: Deployment
) -> None:
    keyring = dns.tsigkeyring.from_text({"rke2ha-key.": TSIG_SECRET})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyalgorithm="hmac-sha256")
    update.add(f"{HOSTNAME}.", 60, "A", "127.0.80.99")
    response = dns.query.tcp(update, named.host, port=named.port, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR

    deployment.write(_spec(named))
    up = deployment.cli("up", "--yes")
    assert up.code == 1
    assert "which rke2ha did not create" in up.err
    assert "rke2ha dns publish --adopt" in up.err
    assert deployment.our_processes() == []  # the load balancer was not started either
    assert _answer(named, HOSTNAME, "A") == ["127.0.80.99"]
