"""`rke2ha plan/up/down` with `provider: aws`, end to end through the CLI against moto.

What moto does not simulate, and so these tests do not claim:
- target health: moto reports every registered target `healthy` at once, so `--wait`
  is exercised only as "returns when the NLB says healthy", never as real health checks;
- waiters: instances are `running` and the NLB `active` at the first poll, so the waits
  return immediately (their bounds are set in code, not exercised here);
- the user data never runs: the tests read it back and check what it contains.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from tests.aws.conftest import HOSTNAME, Cli, moto_ami, tagged

ElbTargetGroup = dict[str, Any]


def _up(cli: Callable[..., Cli], spec: Path, *extra: str) -> Cli:
    result = cli("up", "-f", str(spec), "--yes", *extra)
    assert result.code == 0, result.err + result.out
    return result


def _target_groups(session: boto3.Session) -> dict[int, ElbTargetGroup]:
    groups = session.client("elbv2").describe_target_groups()["TargetGroups"]
    return {int(tg["Port"]): tg for tg in groups}


def _listeners(session: boto3.Session) -> dict[int, Any]:
    elb = session.client("elbv2")
    lb = elb.describe_load_balancers()["LoadBalancers"][0]
    return {
        int(ls["Port"]): ls
        for ls in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }


def _records(session: boto3.Session, zone_id: str) -> dict[tuple[str, str], Any]:
    rrsets = session.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    return {(r["Name"], r["Type"]): r for r in rrsets["ResourceRecordSets"]}


def _user_data(session: boto3.Session, instance_id: str) -> str:
    value = session.client("ec2").describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData"
    )["UserData"]["Value"]
    return base64.b64decode(value).decode()


def _instances(session: boto3.Session) -> dict[str, Any]:
    reservations = session.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:rke2ha:cluster", "Values": ["rancher"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    out = {}
    for reservation in reservations:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            out[tags["rke2ha:address"].split(".", 1)[1]] = instance
    return out


def test_up_creates_everything_and_second_plan_is_clean(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec()
    first = _up(cli, spec)
    assert "Plan: 21 to add, 0 to change, 0 to destroy" in first.out
    assert "Applied 21 change(s)." in first.out

    # Three instances, each in its own zone, with the instance profile.
    instances = _instances(session)
    assert sorted(instances) == ["node-1", "node-2", "node-3"]
    zones = {i["Placement"]["AvailabilityZone"] for i in instances.values()}
    assert len(zones) == 3
    for instance in instances.values():
        assert instance["IamInstanceProfile"]["Arn"].endswith("/rke2ha-rancher-node")
        assert instance["ImageId"] == moto_ami(session)
        assert instance["InstanceType"] == "m5.xlarge"

    # The NLB: network, internet-facing, four TCP listeners each forwarding to its group.
    elb = session.client("elbv2")
    lb = elb.describe_load_balancers()["LoadBalancers"][0]
    assert lb["Type"] == "network" and lb["Scheme"] == "internet-facing"
    groups = _target_groups(session)
    listeners = _listeners(session)
    assert sorted(listeners) == [80, 443, 6443, 9345]
    for port, listener in listeners.items():
        assert listener["Protocol"] == "TCP"
        assert listener["DefaultActions"][0]["TargetGroupArn"] == groups[port]["TargetGroupArn"]

    # Health checks: 80/443 -> HTTP /healthz on 80; 6443 and 9345 -> HTTPS /readyz on 6443,
    # 200 only (anonymous /readyz is on); thresholds from the spec.
    assert sorted(groups) == [80, 443, 6443, 9345]
    for port in (80, 443):
        tg = groups[port]
        assert (tg["HealthCheckProtocol"], tg["HealthCheckPort"], tg["HealthCheckPath"]) == (
            "HTTP",
            "80",
            "/healthz",
        )
        assert tg["Matcher"]["HttpCode"] == "200"
    for port in (6443, 9345):
        tg = groups[port]
        assert (tg["HealthCheckProtocol"], tg["HealthCheckPort"], tg["HealthCheckPath"]) == (
            "HTTPS",
            "6443",
            "/readyz",
        )
        assert tg["Matcher"]["HttpCode"] == "200"
    for tg in groups.values():
        assert tg["Protocol"] == "TCP" and tg["TargetType"] == "instance"
        assert (tg["HealthCheckIntervalSeconds"], tg["HealthCheckTimeoutSeconds"]) == (10, 5)
        assert (tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (3, 3)
        registered = {
            d["Target"]["Id"]
            for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])[
                "TargetHealthDescriptions"
            ]
        }
        assert registered == {i["InstanceId"] for i in instances.values()}

    # The token: a SecureString holding the 0600 token file's value; the role may read it.
    token_file = spec.parent / ".rke2ha" / "secrets" / "rancher-rke2-token"
    token = token_file.read_text().strip()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    parameter = session.client("ssm").get_parameter(
        Name="/rke2ha/rancher/rke2-token", WithDecryption=True
    )["Parameter"]
    assert parameter["Type"] == "SecureString" and parameter["Value"] == token
    iam = session.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName="rke2ha-rancher-node")
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == ["rke2ha-rancher-node"]
    policy = iam.get_role_policy(RoleName="rke2ha-rancher-node", PolicyName="rke2ha-read-token")
    document = policy["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    assert document["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": ["arn:aws:ssm:us-east-1:123456789012:parameter/rke2ha/rancher/rke2-token"],
        }
    ]

    # Route 53: alias A to the NLB with its canonical zone id, and the ownership TXT.
    records = _records(session, hosted_zone)
    alias = records[(f"{HOSTNAME}.", "A")]["AliasTarget"]
    assert alias["DNSName"].rstrip(".") == lb["DNSName"]
    assert alias["HostedZoneId"] == lb["CanonicalHostedZoneId"]
    owner = records[(f"_rke2ha.{HOSTNAME}.", "TXT")]["ResourceRecords"]
    assert owner == [{"Value": '"heritage=rke2ha,rke2ha/cluster=rancher"'}]

    # User data: never the token; config with token-file, tls-san, join order.
    first = _user_data(session, instances["node-1"]["InstanceId"])
    for node in ("node-1", "node-2", "node-3"):
        text = _user_data(session, instances[node]["InstanceId"])
        assert token not in text
        assert "token-file: /etc/rancher/rke2/rke2ha-token" in text
        assert f"- {HOSTNAME}\n- {lb['DNSName']}\n" in text
        assert "INSTALL_RKE2_VERSION" in text and "v1.32.6+rke2r1" in text
        assert "authentication-config=/etc/rancher/rke2/authentication-config.yaml" in text
    assert "server: https://" not in first
    for previous, node in (("node-1", "node-2"), ("node-2", "node-3")):
        text = _user_data(session, instances[node]["InstanceId"])
        assert f"server: https://{HOSTNAME}:9345" in text
        assert f"PREVIOUS={instances[previous]['PrivateIpAddress']}" in text

    after = cli("plan", "-f", str(spec), "--detailed-exitcode")
    assert after.code == 0, after.err + after.out
    assert "No changes." in after.out
    again = _up(cli, spec)
    assert "No changes." in again.out and "Applied" not in again.out


def test_drift_is_planned_back_and_repaired(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec()
    _up(cli, spec)
    elb = session.client("elbv2")
    groups = _target_groups(session)
    instances = _instances(session)
    gone = instances["node-2"]["InstanceId"]
    elb.deregister_targets(TargetGroupArn=groups[6443]["TargetGroupArn"], Targets=[{"Id": gone}])
    elb.delete_listener(ListenerArn=_listeners(session)[443]["ListenerArn"])

    plan = cli("plan", "-f", str(spec), "--json", "--detailed-exitcode")
    assert plan.code == 2, plan.err
    document = json.loads(plan.out)
    changes = {(c["symbol"], c["address"]) for c in document["changes"]}
    assert changes == {("~", "targets.6443"), ("+", "listener.443")}
    target_change = next(c for c in document["changes"] if c["address"] == "targets.6443")
    assert target_change["diffs"] == [
        {"key": "targets", "before": ["node-1", "node-3"], "after": ["node-1", "node-2", "node-3"]}
    ]

    _up(cli, spec)
    assert sorted(_listeners(session)) == [80, 443, 6443, 9345]
    registered = {
        d["Target"]["Id"]
        for d in elb.describe_target_health(TargetGroupArn=groups[6443]["TargetGroupArn"])[
            "TargetHealthDescriptions"
        ]
    }
    assert gone in registered

    # An instance terminated out of band is planned back (and made again by `up`).
    victim = _instances(session)["node-3"]["InstanceId"]
    session.client("ec2").terminate_instances(InstanceIds=[victim])
    plan = cli("plan", "-f", str(spec), "--json", "--detailed-exitcode")
    assert plan.code == 2, plan.err
    changes = {(c["symbol"], c["address"]) for c in json.loads(plan.out)["changes"]}
    assert ("+", "instance.node-3") in changes
    assert ("+", "listener.443") not in changes  # the first repair held
    _up(cli, spec)
    replaced = _instances(session)
    assert sorted(replaced) == ["node-1", "node-2", "node-3"]
    assert replaced["node-3"]["InstanceId"] != victim
    for tg in _target_groups(session).values():
        ids = {
            d["Target"]["Id"]
            for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])[
                "TargetHealthDescriptions"
            ]
        }
        assert replaced["node-3"]["InstanceId"] in ids and victim not in ids
    assert cli("plan", "-f", str(spec), "--detailed-exitcode").code == 0


def test_foreign_record_stops_up_before_anything_is_created(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    session.client("route53").change_resource_record_sets(
        HostedZoneId=hosted_zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": HOSTNAME,
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "192.0.2.7"}],
                    },
                }
            ]
        },
    )
    spec = write_spec()
    result = cli("up", "-f", str(spec), "--yes")
    assert result.code == 1, result.out + result.err
    assert "192.0.2.7" in result.err and "left untouched" in result.err
    assert "Traceback" not in result.err
    assert tagged(session) == {
        "instances": [],
        "security_groups": [],
        "elb": [],
        "ssm": [],
        "iam_roles": [],
        "iam_profiles": [],
    }
    records = _records(session, hosted_zone)
    assert records[(f"{HOSTNAME}.", "A")]["ResourceRecords"] == [{"Value": "192.0.2.7"}]
    assert (f"_rke2ha.{HOSTNAME}.", "TXT") not in records
    assert "--adopt-dns" in result.err

    # Taking it over is possible, but only on purpose.
    adopted = _up(cli, spec, "--adopt-dns")
    assert "--adopt-dns replaces it with the NLB alias" in adopted.out
    records = _records(session, hosted_zone)
    lb = session.client("elbv2").describe_load_balancers()["LoadBalancers"][0]
    assert records[(f"{HOSTNAME}.", "A")]["AliasTarget"]["DNSName"].rstrip(".") == lb["DNSName"]
    assert "ResourceRecords" not in records[(f"{HOSTNAME}.", "A")]
    assert (f"_rke2ha.{HOSTNAME}.", "TXT") in records


def test_up_interrupted_after_the_instances_is_finished_by_the_next_up(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec()
    # Fault injection: the process dies (os._exit) right after EC2 launched node-3 and
    # before the state file recorded it - the pending entry is all that is left.
    crashed = cli(
        "up", "-f", str(spec), "--yes", env={"RKE2HA_FAULT_CRASH_AFTER_CREATE": "instance.node-3"}
    )
    assert crashed.code == 70, crashed.err
    state = json.loads((spec.parent / ".rke2ha" / "rancher.state.json").read_text())
    assert state["resources"]["instance.node-3"]["status"] == "pending"
    assert state["resources"]["instance.node-2"]["status"] == "created"
    assert "listener.80" not in state["resources"]
    assert sorted(_instances(session)) == ["node-1", "node-2", "node-3"]
    assert (spec.parent / ".rke2ha" / "rancher.lock").exists()  # left by the dead process
    assert session.client("elbv2").describe_load_balancers()["LoadBalancers"]
    assert _listeners(session) == {}

    resumed = _up(cli, spec)
    assert "removed a stale lock" in resumed.out
    assert "interrupted while creating instance.node-3: found it by its tags" in resumed.out
    assert "+ instance.node-3" not in resumed.out
    instances = _instances(session)
    assert sorted(instances) == ["node-1", "node-2", "node-3"]  # no second node-3
    assert sorted(_listeners(session)) == [80, 443, 6443, 9345]
    state = json.loads((spec.parent / ".rke2ha" / "rancher.state.json").read_text())
    assert {e["status"] for e in state["resources"].values()} == {"created"}
    assert state["resources"]["instance.node-3"]["id"] == instances["node-3"]["InstanceId"]
    assert cli("plan", "-f", str(spec), "--detailed-exitcode").code == 0


def test_down_leaves_nothing_tagged(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec()
    _up(cli, spec)
    assert all(tagged(session).values())
    # Something of someone else's in the same zone and VPC stays.
    route53 = session.client("route53")
    route53.change_resource_record_sets(
        HostedZoneId=hosted_zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"other.{HOSTNAME.split('.', 1)[1]}",
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "192.0.2.8"}],
                    },
                }
            ]
        },
    )
    # Without its state file, the same cluster name owns nothing: the resources carry
    # another owner id, and rke2ha refuses rather than adopting or deleting them.
    state = spec.parent / ".rke2ha" / "rancher.state.json"
    saved = state.read_bytes()
    state.unlink()
    lost = cli("down", "-f", str(spec), "--yes")
    assert lost.code == 1 and "state file" in lost.err and "restore it" in lost.err
    assert all(tagged(session).values())
    state.write_bytes(saved)

    result = cli("down", "-f", str(spec), "--yes")
    assert result.code == 0, result.err
    assert "Destroyed 21 resource(s)." in result.out
    assert tagged(session) == {
        "instances": [],
        "security_groups": [],
        "elb": [],
        "ssm": [],
        "iam_roles": [],
        "iam_profiles": [],
    }
    assert session.client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    records = _records(session, hosted_zone)
    assert set(records) == {
        ("example.com.", "NS"),
        ("example.com.", "SOA"),
        ("other.example.com.", "A"),
    }
    assert not (spec.parent / ".rke2ha" / "rancher.state.json").exists()
    again = cli("down", "-f", str(spec), "--yes")
    assert again.code == 0 and "Nothing to destroy" in again.out


def test_without_anonymous_health_the_matcher_accepts_401_and_up_wait_reads_health(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec(anonymous=False)
    plan = cli("plan", "-f", str(spec))
    assert plan.code == 0, plan.err
    assert "readiness is unknown" in plan.out
    # moto marks every registered target healthy at once: this shows that `--wait` reads
    # target health per port and returns, not that real health checks pass. `--no-check`:
    # the check after the wait would probe the addresses moto made up (not loopback).
    result = _up(cli, spec, "--wait", "--wait-timeout", "20", "--no-check")
    for port in (80, 443, 6443, 9345):
        assert f"ready: port {port}: 3/3 targets healthy" in result.out
    groups = _target_groups(session)
    assert groups[6443]["Matcher"]["HttpCode"] == "200,401"
    assert groups[9345]["Matcher"]["HttpCode"] == "200,401"
    assert groups[80]["Matcher"]["HttpCode"] == "200"
    text = _user_data(session, _instances(session)["node-1"]["InstanceId"])
    assert "authentication-config" not in text
    assert "READY_STATUSES=200" not in _user_data(
        session, _instances(session)["node-2"]["InstanceId"]
    )


def test_a_changed_spec_is_planned_with_the_fields_that_changed(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec()
    _up(cli, spec)
    state = json.loads((spec.parent / ".rke2ha" / "rancher.state.json").read_text())
    assert state["spec"]["file"] == str(spec.resolve())

    write_spec(anonymous=False)
    plan = cli("plan", "-f", str(spec), "--json", "--detailed-exitcode")
    assert plan.code == 2, plan.err
    document = json.loads(plan.out)
    # The hash-free answer to "why does the target group change?": this field.
    assert document["spec_changes"] == [
        {"key": "rke2.anonymous_health", "before": True, "after": False}
    ]
    assert document["spec_from"] == str(spec.resolve())
    text = cli("plan", "-f", str(spec))
    assert "rke2.anonymous_health: True -> False" in text.out
