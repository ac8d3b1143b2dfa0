"""`rke2ha dns publish/unpublish` with provider route53, through the CLI, against moto's
server (Route 53 and ELBv2 emulated on 127.0.20.3). The CLI subprocess reaches it through
AWS_ENDPOINT_URL with dummy credentials; nothing leaves the machine.

What moto does not simulate, and so is not proven here: change propagation (moto reports
every change INSYNC at once, so the waiter returns on its first GetChange or is skipped),
and Route 53's alias-target validation against the real NLB.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from tests.conftest import CliResult, free_port
from tests.dns.conftest import MOTO_HOST

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = free_port(MOTO_HOST)
    server = ThreadedMotoServer(ip_address=MOTO_HOST, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{MOTO_HOST}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """moto's server, emptied (its state is process-wide), and the CLI's AWS environment."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10
    ).close()
    endpoint = moto_server
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield endpoint


@pytest.fixture
def route53(moto_endpoint: str) -> Any:
    return boto3.client("route53", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def zone_id(route53: Any) -> str:
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference="rke2ha-test")
    return str(zone["HostedZone"]["Id"].rsplit("/", 1)[-1])


def rrsets(route53: Any, zone_id: str, name: str) -> dict[str, Any]:
    listing = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {r["Type"]: r for r in listing if r["Name"] == name}


def values(rrset: dict[str, Any]) -> list[str]:
    return sorted(r["Value"] for r in rrset.get("ResourceRecords", []))


def route53_spec(write_spec: Callable[..., Path], **extra: Any) -> Path:
    dns_block = {"provider": "route53", "route53": {}, **extra.pop("dns", {})}
    return write_spec({"region": REGION, "dns": dns_block, **extra})


HOST = "rancher.example.com."
OWNER = "_rke2ha.rancher.example.com."


def test_publish_a_record_then_no_change_then_unpublish(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult], route53: Any, zone_id: str
) -> None:
    spec = route53_spec(write_spec)
    result = run_cli("dns", "publish", "-f", str(spec), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["action"] == "create"
    found = rrsets(route53, zone_id, HOST)
    assert values(found["A"]) == ["127.0.20.10"] and found["A"]["TTL"] == 60
    owner = rrsets(route53, zone_id, OWNER)
    assert values(owner["TXT"]) == ['"heritage=rke2ha,rke2ha/cluster=prod"']

    again = run_cli("dns", "publish", "-f", str(spec), "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["action"] == "none"

    moved = route53_spec(write_spec, load_balancer={"address": "127.0.20.11"})
    updated = run_cli("dns", "publish", "-f", str(moved))
    assert updated.code == 0, updated.err
    assert values(rrsets(route53, zone_id, HOST)["A"]) == ["127.0.20.11"]

    removed = run_cli("dns", "unpublish", "-f", str(moved), "--json")
    assert removed.code == 0, removed.err
    assert json.loads(removed.out)["action"] == "delete"
    assert rrsets(route53, zone_id, HOST) == {}
    assert rrsets(route53, zone_id, OWNER) == {}
    assert "SOA" in rrsets(route53, zone_id, "example.com.")  # the zone's own records stay


def test_alias_to_a_network_load_balancer(
    write_spec: Callable[..., Path],
    run_cli: Callable[..., CliResult],
    route53: Any,
    zone_id: str,
    moto_endpoint: str,
) -> None:
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1a")
    elbv2 = boto3.client("elbv2", endpoint_url=moto_endpoint, region_name=REGION)
    nlb = elbv2.create_load_balancer(
        Name="rancher-nlb", Subnets=[subnet["Subnet"]["SubnetId"]], Type="network"
    )["LoadBalancers"][0]
    spec = route53_spec(write_spec, load_balancer={"engine": "aws-nlb", "address": nlb["DNSName"]})
    result = run_cli("dns", "publish", "-f", str(spec), "--json")
    assert result.code == 0, result.err
    alias = rrsets(route53, zone_id, HOST)["A"]["AliasTarget"]
    assert alias["DNSName"].rstrip(".") == nlb["DNSName"].lower()
    # The hosted zone id comes from the NLB as ELB reports it, not from a table.
    assert alias["HostedZoneId"] == nlb["CanonicalHostedZoneId"]
    again = run_cli("dns", "publish", "-f", str(spec), "--json")
    assert json.loads(again.out)["action"] == "none", again.out
    removed = run_cli("dns", "unpublish", "-f", str(spec))
    assert removed.code == 0, removed.err
    assert rrsets(route53, zone_id, HOST) == {}


def test_unknown_nlb_is_a_clear_error(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult], zone_id: str
) -> None:
    spec = route53_spec(
        write_spec, load_balancer={"engine": "aws-nlb", "address": "nope.elb.amazonaws.com"}
    )
    result = run_cli("dns", "publish", "-f", str(spec))
    assert result.code == 1 and "no load balancer" in result.err
    assert "Traceback" not in result.err


def test_strangers_record_is_refused_and_left_alone(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult], route53: Any, zone_id: str
) -> None:
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": HOST,
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "192.0.2.7"}],
                    },
                }
            ]
        },
    )
    spec = route53_spec(write_spec)
    result = run_cli("dns", "publish", "-f", str(spec), "--json")
    assert result.code == 1
    assert json.loads(result.out)["action"] == "refused"
    assert values(rrsets(route53, zone_id, HOST)["A"]) == ["192.0.2.7"]
    assert rrsets(route53, zone_id, OWNER) == {}
    removed = run_cli("dns", "unpublish", "-f", str(spec))
    assert removed.code == 1 and "left untouched" in removed.err
    assert values(rrsets(route53, zone_id, HOST)["A"]) == ["192.0.2.7"]
    adopted = run_cli("dns", "publish", "-f", str(spec), "--adopt")
    assert adopted.code == 0, adopted.err
    assert values(rrsets(route53, zone_id, HOST)["A"]) == ["127.0.20.10"]
    assert OWNER in {r["Name"] for r in rrsets(route53, zone_id, OWNER).values()}


def test_hosted_zone_by_id_and_missing_zone(
    write_spec: Callable[..., Path], run_cli: Callable[..., CliResult], route53: Any, zone_id: str
) -> None:
    by_id = route53_spec(write_spec, dns={"route53": {"hosted_zone_id": zone_id}})
    assert run_cli("dns", "publish", "-f", str(by_id)).code == 0
    other = route53_spec(write_spec, hostname="rancher.other.test", dns={"zone": "other.test"})
    result = run_cli("dns", "publish", "-f", str(other))
    assert result.code == 1 and "no Route 53 hosted zone named other.test." in result.err
