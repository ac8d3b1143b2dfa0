"""Clear errors through the CLI (against moto) and the AWS error translation table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from tests.aws.conftest import Cli, tagged

from rke2ha import providers
from rke2ha.errors import InvalidError, UsageError
from rke2ha.providers.aws.errors import translate
from rke2ha.specfile import load_spec


def _no_traceback(result: Cli) -> None:
    assert "Traceback" not in result.err, result.err


def test_unknown_region_is_a_usage_error(
    cli: Callable[..., Cli], write_spec: Callable[..., Path]
) -> None:
    spec = write_spec(region="us-east-9")
    result = cli("plan", "-f", str(spec))
    assert result.code == 2
    assert "aws.region: unknown AWS region 'us-east-9'" in result.err
    assert "us-east-1" in result.err  # regions like it
    _no_traceback(result)
    detailed = cli("plan", "-f", str(spec), "--detailed-exitcode")
    assert detailed.code == 1  # 2 would mean "changes"


def test_missing_ami_stops_before_anything_is_created(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    spec = write_spec(ami="ami-0000000000000dead")
    result = cli("up", "-f", str(spec), "--yes")
    assert result.code == 1
    assert "aws.ami" in result.err and "ami-0000000000000dead" in result.err
    _no_traceback(result)
    assert not any(tagged(session).values())


def test_fewer_zones_than_nodes(
    cli: Callable[..., Cli],
    write_spec: Callable[..., Path],
    session: boto3.Session,
    hosted_zone: str,
) -> None:
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1a")
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24", AvailabilityZone="us-east-1b")
    spec = write_spec()
    spec.write_text(
        spec.read_text().replace("  rke2_version:", f"  vpc_id: {vpc}\n  rke2_version:")
    )
    result = cli("up", "-f", str(spec), "--yes")
    assert result.code == 1
    assert "2 availability zone(s) (us-east-1a, us-east-1b)" in result.err
    assert "3 nodes" in result.err
    _no_traceback(result)
    assert not any(tagged(session).values())


def test_missing_credentials(cli: Callable[..., Cli], write_spec: Callable[..., Path]) -> None:
    spec = write_spec()
    result = cli(
        "plan", "-f", str(spec), env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    )
    assert result.code == 2
    assert "no AWS credentials found" in result.err
    _no_traceback(result)


def test_provider_not_registered_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lab and existing are registered by their own engineers; unregister one to see the
    # message every not-yet-available provider gets (exit 2).
    monkeypatch.delitem(providers._REGISTRY, "existing", raising=False)
    spec = tmp_path / "existing.yaml"
    spec.write_text(
        "name: rancher\nhostname: rancher.example.com\nprovider: existing\n"
        "nodes: [{name: a, address: 10.0.0.1}, {name: b, address: 10.0.0.2}, "
        "{name: c, address: 10.0.0.3}]\ndns: {provider: manual, zone: example.com}\n"
    )
    with pytest.raises(UsageError, match="provider existing: not available yet") as err:
        providers.provider_for(load_spec(spec))
    assert err.value.exit_code == 2


def test_up_without_yes_and_without_a_terminal_refuses(
    cli: Callable[..., Cli], write_spec: Callable[..., Path], session: boto3.Session
) -> None:
    session.client("route53").create_hosted_zone(Name="example.com", CallerReference="t")
    result = cli("up", "-f", str(write_spec()))
    assert result.code == 2
    assert "rerun with --yes" in result.err
    assert not any(tagged(session).values())


def _client_error(code: str, message: str = "m") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}}, "RunInstances"
    )


@pytest.mark.parametrize(
    "code", ["InstanceLimitExceeded", "VcpuLimitExceeded", "TooManyLoadBalancers"]
)
def test_quota_errors_say_quota(code: str) -> None:
    # moto does not enforce quotas, so the mapping is tested on constructed errors.
    err = translate(_client_error(code, "You have requested more vCPU capacity"), "launching")
    assert isinstance(err, InvalidError)
    assert "quota exceeded" in str(err) and "Service Quotas" in str(err)


def test_other_translations() -> None:
    assert isinstance(translate(botocore.exceptions.NoCredentialsError(), "x"), UsageError)
    ami = translate(_client_error("InvalidAMIID.NotFound", "The image id does not exist"), "x")
    assert "aws.ami" in str(ami)
    denied = translate(_client_error("UnauthorizedOperation"), "creating the NLB")
    assert "not allowed while creating the NLB" in str(denied)


def test_retry_is_bounded_and_only_for_transient_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from rke2ha.providers.aws import opsbase

    monkeypatch.setattr(opsbase, "RETRY_DELAY", 0.0)
    calls: list[int] = []

    def profile_not_ready() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _client_error("InvalidParameterValue", "Invalid IAM Instance Profile name")
        return "ok"

    assert (
        opsbase.retry(
            profile_not_ready, codes={"InvalidParameterValue"}, message="instance profile", what="x"
        )
        == "ok"
    )
    assert len(calls) == 3

    def bad_type() -> str:
        calls.append(1)
        raise _client_error("InvalidParameterValue", "Invalid instance type")

    calls.clear()
    with pytest.raises(botocore.exceptions.ClientError):
        opsbase.retry(
            bad_type, codes={"InvalidParameterValue"}, message="instance profile", what="x"
        )
    assert len(calls) == 1  # not transient: no retry

    def always_busy() -> str:
        calls.append(1)
        raise _client_error("ResourceInUse")

    calls.clear()
    with pytest.raises(botocore.exceptions.ClientError):
        opsbase.retry(always_busy, codes={"ResourceInUse"}, what="x")
    assert len(calls) == opsbase.RETRY_ATTEMPTS
