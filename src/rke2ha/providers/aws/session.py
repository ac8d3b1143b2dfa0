"""boto3 clients for one region, from boto3's usual chain (profile, environment, role).

`AWS_ENDPOINT_URL` (and the per-service variants) is honoured by boto3 itself, which is how
the tests point everything at a local moto server. The region is checked against
botocore's own endpoint data before any call, so a typo fails at once with the list
instead of as a connection error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import botocore.config

from rke2ha.errors import UsageError
from rke2ha.providers.aws.errors import aws_errors

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_ssm import SSMClient

# Retries: boto3's "standard" mode backs off on throttling; bounded so nothing hangs.
_CONFIG = botocore.config.Config(
    retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60
)


@dataclass
class AwsClients:
    session: boto3.Session
    region: str
    ec2: EC2Client
    elbv2: ElasticLoadBalancingv2Client
    iam: IAMClient
    ssm: SSMClient
    route53: Route53Client


def check_region(session: boto3.Session, region: str) -> None:
    known = (
        set(session.get_available_regions("ec2"))
        | set(session.get_available_regions("ec2", partition_name="aws-cn"))
        | set(session.get_available_regions("ec2", partition_name="aws-us-gov"))
    )
    if region not in known:
        close = sorted(r for r in known if r.split("-")[0] == region.split("-")[0])[:8]
        hint = f"; regions like it: {', '.join(close)}" if close else ""
        raise UsageError(f"aws.region: unknown AWS region {region!r}{hint}")


def connect(region: str) -> AwsClients:
    """Clients for `region`; raises UsageError for an unknown region or no credentials."""
    with aws_errors("creating the AWS session"):
        session = boto3.Session(region_name=region)
        check_region(session, region)
        if session.get_credentials() is None:
            raise UsageError(
                "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or run on a host with an instance role"
            )
        return AwsClients(
            session=session,
            region=region,
            ec2=session.client("ec2", config=_CONFIG),
            elbv2=session.client("elbv2", config=_CONFIG),
            iam=session.client("iam", config=_CONFIG),
            ssm=session.client("ssm", config=_CONFIG),
            route53=session.client("route53", config=_CONFIG),
        )
