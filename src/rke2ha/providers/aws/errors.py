"""AWS failures turned into messages that say what is wrong and what to do.

Everything boto3 raises inside the AWS provider passes through `aws_errors()`: missing
credentials, an unknown region, an AMI that does not exist, an exhausted quota and any
other service error become `UsageError`/`InvalidError` naming the operation, never a
traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import botocore.exceptions

from rke2ha.errors import InvalidError, UsageError

QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "TooManyLoadBalancers",
        "TooManyTargetGroups",
        "TooManyListeners",
        "TooManyTargets",
        "TooManyRegistrationsForTargetId",
        "LimitExceeded",
        "ResourceLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "SecurityGroupLimitExceeded",
        "ParameterLimitExceeded",
        "HostedZoneLimitExceeded",
    }
)
AMI_CODES = frozenset(
    {"InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"}
)


def error_code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def translate(err: Exception, doing: str) -> Exception:
    """The rke2ha error for `err`, raised while `doing` something."""
    if isinstance(
        err, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return UsageError(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run on a host with an instance role"
        )
    if isinstance(err, botocore.exceptions.ProfileNotFound):
        return UsageError(f"AWS profile not found: {err}; check AWS_PROFILE")
    if isinstance(err, botocore.exceptions.EndpointConnectionError):
        return UsageError(
            f"cannot reach AWS while {doing}: {err}; check the network or AWS_ENDPOINT_URL"
        )
    if isinstance(err, botocore.exceptions.WaiterError):
        return InvalidError(f"gave up waiting while {doing}: {err.last_response.get('Error', err)}")
    if isinstance(err, botocore.exceptions.ClientError):
        code = error_code(err)
        message = err.response.get("Error", {}).get("Message", "")
        if code in AMI_CODES:
            return InvalidError(
                f"aws.ami: {message or code}; pick an AMI that exists in this region "
                "(aws ec2 describe-images --owners amazon ...)"
            )
        if code in QUOTA_CODES:
            return InvalidError(
                f"AWS quota exceeded while {doing} ({code}: {message}); free some capacity or "
                "request an increase in the Service Quotas console"
            )
        if code in {
            "AuthFailure",
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        }:
            return UsageError(f"AWS rejected the credentials while {doing} ({code}: {message})")
        if code in {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}:
            return InvalidError(
                f"not allowed while {doing} ({code}: {message}); grant the permission to the caller"
            )
        return InvalidError(f"AWS error while {doing}: {code}: {message}")
    if isinstance(err, botocore.exceptions.BotoCoreError):
        return InvalidError(f"AWS client error while {doing}: {err}")
    return err


@contextlib.contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Translate boto3/botocore failures raised inside the block."""
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise translate(err, doing) from None
