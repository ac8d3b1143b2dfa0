"""A moto server on a loopback port, a spec that uses it, and the CLI run against it.

Every request goes to 127.0.0.1: the subprocess gets `AWS_ENDPOINT_URL` pointing at moto,
dummy credentials, no AWS config files and IMDS disabled, so boto3 has no reason to reach
any other address.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ZONE = "example.com"
HOSTNAME = "rancher.example.com"


@dataclass
class Cli:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for boto3 (tests and the CLI): moto only, fresh state every test."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10
    ).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=moto_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    return env


@pytest.fixture
def session(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    for key, value in aws_env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return boto3.Session(region_name=REGION)


def moto_ami(session: boto3.Session) -> str:
    """An Ubuntu AMI from moto's catalogue (moto only launches AMIs it knows)."""
    images = session.client("ec2").describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["ubuntu/images/*"]}]
    )["Images"]
    assert images, "moto's AMI catalogue has no ubuntu image"
    return str(sorted(images, key=lambda i: i["Name"])[-1]["ImageId"])


SPEC = """\
name: rancher
hostname: {hostname}
provider: aws
region: {region}
ingress: nginx
nodes:
  - {{name: node-1}}
  - {{name: node-2}}
  - {{name: node-3}}
load_balancer:
  layer: 4
  engine: aws-nlb
  ports: [80, 443, 6443, 9345]
  health: {{interval: 10s, timeout: 5s, rise: 3, fall: 3}}
rke2:
  anonymous_health: {anonymous}
dns:
  provider: route53
  zone: {zone}
  record: A
  ttl: 60
aws:
  region: {region}
  instance_type: m5.xlarge
  ami: {ami}
  allowed_cidrs: [203.0.113.0/24]
  rke2_version: v1.32.6+rke2r1
{extra}"""


@pytest.fixture
def write_spec(session: boto3.Session, tmp_path: Path) -> Callable[..., Path]:
    def write(
        *, ami: str | None = None, anonymous: bool = True, extra: str = "", region: str = REGION
    ) -> Path:
        path = tmp_path / "rke2ha.yaml"
        path.write_text(
            SPEC.format(
                hostname=HOSTNAME,
                region=region,
                zone=ZONE,
                ami=ami or moto_ami(session),
                anonymous=str(anonymous).lower(),
                extra=extra,
            )
        )
        return path

    return write


@pytest.fixture
def hosted_zone(session: boto3.Session) -> str:
    zone = session.client("route53").create_hosted_zone(Name=ZONE, CallerReference="rke2ha-test")
    return str(zone["HostedZone"]["Id"].rsplit("/", 1)[-1])


@pytest.fixture
def cli(aws_env: dict[str, str], tmp_path: Path) -> Callable[..., Cli]:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Cli:
        proc = subprocess.run(
            [sys.executable, "-m", "rke2ha", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**aws_env, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
        return Cli(proc.returncode, proc.stdout, proc.stderr)

    return run


def tagged(session: boto3.Session, cluster: str = "rancher") -> dict[str, list[Any]]:
    """Everything in moto carrying `rke2ha:cluster=<cluster>`, service by service."""
    ec2 = session.client("ec2")
    elb = session.client("elbv2")
    iam = session.client("iam")
    ssm = session.client("ssm")
    found: dict[str, list[Any]] = {}
    found["instances"] = [
        i["InstanceId"]
        for r in ec2.describe_instances(
            Filters=[
                {"Name": "tag:rke2ha:cluster", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]
    found["security_groups"] = [
        g["GroupId"]
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "tag:rke2ha:cluster", "Values": [cluster]}]
        )["SecurityGroups"]
    ]
    arns = [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]]
    arns += [tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]]
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        arns += [
            ls["ListenerArn"]
            for ls in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        ]
    found["elb"] = []
    if arns:
        for item in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]:
            if {"Key": "rke2ha:cluster", "Value": cluster} in item.get("Tags", []):
                found["elb"].append(item["ResourceArn"])
    found["ssm"] = [
        p["Name"]
        for p in ssm.describe_parameters()["Parameters"]
        if {"Key": "rke2ha:cluster", "Value": cluster}
        in ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=p["Name"])["TagList"]
    ]
    found["iam_roles"] = [
        r["RoleName"]
        for r in iam.list_roles()["Roles"]
        if {"Key": "rke2ha:cluster", "Value": cluster}
        in iam.list_role_tags(RoleName=r["RoleName"])["Tags"]
    ]
    found["iam_profiles"] = [
        p["InstanceProfileName"]
        for p in iam.list_instance_profiles()["InstanceProfiles"]
        if {"Key": "rke2ha:cluster", "Value": cluster}
        in iam.get_instance_profile(InstanceProfileName=p["InstanceProfileName"])[
            "InstanceProfile"
        ].get("Tags", [])
    ]
    return found
