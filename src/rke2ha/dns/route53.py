"""Publish into Route 53 with boto3.

When the load balancer is an AWS NLB (`load_balancer.engine: aws-nlb`) the hostname gets an
alias A record to it; the alias's hosted zone id is read from the NLB itself
(elbv2 `DescribeLoadBalancers`, `CanonicalHostedZoneId`), never from a table of regions.
Otherwise plain A/AAAA or CNAME records. The hosted zone is found by name unless
`dns.route53.hosted_zone_id` is given.

Route 53 has no prerequisites, but one change batch is applied whole or not at all, a
CREATE fails when the record exists and a DELETE fails unless it names the record exactly.
So:
- CREATE: CREATE the records (fails if someone created them meanwhile);
- UPDATE / ADOPT: DELETE exactly the RRsets read that must change, CREATE the new ones
  (an RRset that changed since it was read makes the DELETE, and the batch, fail);
- DELETE: DELETE exactly our marker and the records.
Unlike RFC 2136's prerequisites, an UPDATE that leaves the marker as it is cannot also
require it in the same batch (there is no condition without a change); the exact DELETE
of the records read right after the marker is the guard.
Nothing is ever UPSERTed over a record we do not own. After the change the publisher waits
until Route 53 reports it INSYNC.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions

from rke2ha.dns.publish import Action, Observed, Plan
from rke2ha.dns.records import (
    ADDRESS_TYPES,
    AliasTarget,
    DesiredRecords,
    Record,
    absolute,
    check_in_zone,
    desired_records,
    owner_record,
)
from rke2ha.errors import InvalidError
from rke2ha.spec import Spec

if TYPE_CHECKING:
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_route53 import Route53Client

WAIT_DELAY = 5  # seconds between GetChange calls (AWS's own waiter default is 30)
WAIT_ATTEMPTS = 120


class Route53Error(InvalidError):
    """Route 53 or ELB refused, or the hosted zone/load balancer was not found (exit 1)."""


def _aws_error(what: str, err: Exception) -> Route53Error:
    if isinstance(err, botocore.exceptions.ClientError):
        error = err.response.get("Error", {})
        return Route53Error(f"{what}: {error.get('Code', '?')}: {error.get('Message', err)}")
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return Route53Error(f"{what}: no AWS credentials; set AWS_PROFILE or AWS_ACCESS_KEY_ID")
    return Route53Error(f"{what}: {err}")


AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def find_hosted_zone(client: Route53Client, zone: str) -> str:
    """The id of the one hosted zone named `zone`; an error for none or several."""
    wanted = absolute(zone)
    try:
        found = client.list_hosted_zones_by_name(DNSName=wanted, MaxItems="100")
    except AWS_ERRORS as err:
        raise _aws_error(f"looking up hosted zone {wanted}", err) from None
    ids = [
        z["Id"].rsplit("/", 1)[-1] for z in found["HostedZones"] if absolute(z["Name"]) == wanted
    ]
    if not ids:
        raise Route53Error(
            f"no Route 53 hosted zone named {wanted}; create it, or set dns.route53.hosted_zone_id"
        )
    if len(ids) > 1:
        raise Route53Error(
            f"{len(ids)} hosted zones are named {wanted} ({', '.join(ids)}: public and "
            "private?); set dns.route53.hosted_zone_id to the one to publish in"
        )
    return ids[0]


def nlb_alias(client: ElasticLoadBalancingv2Client, dns_name: str) -> AliasTarget:
    """The alias target for the NLB whose DNS name is `dns_name`, read from ELB itself."""
    wanted = absolute(dns_name)
    try:
        for page in client.get_paginator("describe_load_balancers").paginate():
            for lb in page["LoadBalancers"]:
                if absolute(lb.get("DNSName", "")) == wanted:
                    return AliasTarget(wanted, lb["CanonicalHostedZoneId"])
    except AWS_ERRORS as err:
        raise _aws_error("reading the load balancers (elbv2 DescribeLoadBalancers)", err) from None
    raise Route53Error(
        f"no load balancer in this account/region has DNS name {dns_name}; "
        "check load_balancer.address and the region"
    )


def _from_aws(rrset: Any) -> Record:
    alias = rrset.get("AliasTarget")
    return Record(
        rrset["Name"],
        rrset["Type"],
        int(rrset.get("TTL", 0)),
        tuple(r["Value"] for r in rrset.get("ResourceRecords", [])),
        AliasTarget(alias["DNSName"], alias["HostedZoneId"]) if alias else None,
    )


def _to_aws(record: Record) -> dict[str, Any]:
    rrset: dict[str, Any] = {"Name": record.name, "Type": record.rdtype}
    if record.alias is not None:
        rrset["AliasTarget"] = {
            "HostedZoneId": record.alias.hosted_zone_id,
            "DNSName": record.alias.dns_name,
            "EvaluateTargetHealth": True,
        }
    else:
        rrset["TTL"] = record.ttl
        rrset["ResourceRecords"] = [{"Value": value} for value in record.values]
    return rrset


class Route53Publisher:
    provider = "route53"

    def __init__(self, spec: Spec, session: boto3.Session | None = None) -> None:
        region = (spec.aws.region if spec.aws else None) or spec.region
        region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.session = session or boto3.Session(region_name=region)
        try:
            self.route53: Route53Client = self.session.client("route53")
        except AWS_ERRORS as err:
            raise _aws_error("creating the Route 53 client", err) from None
        self.spec = spec
        given = spec.dns.route53.hosted_zone_id if spec.dns.route53 else None
        self._zone_id = given.rsplit("/", 1)[-1] if given else None

    @property
    def zone_id(self) -> str:
        if self._zone_id is None:
            self._zone_id = find_hosted_zone(self.route53, self.spec.dns.zone)
        return self._zone_id

    def desired(self) -> DesiredRecords:
        """The spec's records; an alias A record when the load balancer is an AWS NLB."""
        spec = self.spec
        if spec.load_balancer.engine != "aws-nlb" or spec.dns.record != "A":
            return desired_records(spec)
        zone, hostname = check_in_zone(spec)
        address = spec.load_balancer.address
        if not address:
            raise InvalidError(
                "load_balancer.address (the NLB's DNS name) is not known yet; run `rke2ha up`"
            )
        alias = nlb_alias(self.session.client("elbv2"), address)
        host = hostname.to_text().lower()
        record = Record(host, "A", 0, (), alias)
        return DesiredRecords(zone.to_text().lower(), host, (record,), owner_record(spec))

    def _rrsets_at(self, name: str) -> list[Record]:
        wanted = absolute(name)
        try:
            listing = self.route53.list_resource_record_sets(
                HostedZoneId=self.zone_id, StartRecordName=wanted, MaxItems="20"
            )
        except AWS_ERRORS as err:
            raise _aws_error(f"reading records at {wanted}", err) from None
        return [
            _from_aws(rrset)
            for rrset in listing["ResourceRecordSets"]
            if absolute(rrset["Name"].replace("\\052", "*")) == wanted
        ]

    def describe(self, desired: DesiredRecords) -> Observed:
        address = tuple(r for r in self._rrsets_at(desired.hostname) if r.rdtype in ADDRESS_TYPES)
        owners = [r for r in self._rrsets_at(desired.owner.name) if r.rdtype == "TXT"]
        return Observed(address, owners[0] if owners else None)

    def changes(self, plan: Plan) -> list[dict[str, Any]]:
        """The change batch for `plan` (see the module docstring for the conditions).

        RRsets that are already as desired are left out rather than deleted and created
        again: the batch stays minimal (and moto, which checks CREATEs against the zone as
        it was before the batch, accepts it like Route 53 does).
        """
        observed = tuple(r.normalized() for r in plan.observed.all)
        if plan.action is Action.DELETE:
            batch = [{"Action": "DELETE", "ResourceRecordSet": _to_aws(r)} for r in observed]
            owner = plan.observed.owner
            if owner is not None:
                # Only our string goes: other TXT strings at the marker name stay.
                ours = set(plan.desired.owner.values)
                rest = tuple(v for v in owner.values if v not in ours)
                if rest:
                    kept = Record(owner.name, owner.rdtype, owner.ttl, rest)
                    batch.append({"Action": "CREATE", "ResourceRecordSet": _to_aws(kept)})
            return batch
        desired = tuple(r.normalized() for r in plan.desired.all)
        deletes = [r for r in observed if r not in desired]
        creates = [r for r in desired if r not in observed]
        return [{"Action": "DELETE", "ResourceRecordSet": _to_aws(r)} for r in deletes] + [
            {"Action": "CREATE", "ResourceRecordSet": _to_aws(r)} for r in creates
        ]

    def apply(self, plan: Plan) -> None:
        try:
            change = self.route53.change_resource_record_sets(
                HostedZoneId=self.zone_id,
                ChangeBatch={
                    "Comment": f"rke2ha {plan.action} {plan.desired.hostname}",
                    "Changes": self.changes(plan),  # type: ignore[typeddict-item]
                },
            )
        except AWS_ERRORS as err:
            raise _aws_error(
                f"Route 53 refused the {plan.action} of {plan.desired.hostname} "
                "(nothing was changed; the records may have changed since they were read)",
                err,
            ) from None
        change_id = change["ChangeInfo"]["Id"]
        # The waiter asks GetChange at once and sleeps only while the change is PENDING.
        try:
            self.route53.get_waiter("resource_record_sets_changed").wait(
                Id=change_id, WaiterConfig={"Delay": WAIT_DELAY, "MaxAttempts": WAIT_ATTEMPTS}
            )
        except (botocore.exceptions.WaiterError, *AWS_ERRORS) as err:
            raise _aws_error(f"waiting for change {change_id} to be INSYNC", err) from None
