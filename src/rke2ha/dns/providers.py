"""Pick the publisher for `dns.provider`; boto3 is imported only when Route 53 is used."""

from __future__ import annotations

from rke2ha.dns.publish import Publisher
from rke2ha.dns.records import DesiredRecords, desired_records
from rke2ha.errors import UsageError
from rke2ha.spec import Spec


def publisher_for(spec: Spec) -> tuple[Publisher, DesiredRecords]:
    """The publisher for the spec's provider and the records it should publish."""
    provider = spec.dns.provider
    if provider == "builtin":
        raise UsageError(
            "dns.provider is builtin: the record is served by `rke2ha dns serve`, there is "
            "nothing to publish; set dns.provider to rfc2136, route53 or manual"
        )
    if provider == "rfc2136":
        from rke2ha.dns.rfc2136 import Rfc2136Publisher

        return Rfc2136Publisher(spec), desired_records(spec)
    if provider == "route53":
        from rke2ha.dns.route53 import Route53Publisher

        route53 = Route53Publisher(spec)
        return route53, route53.desired()
    from rke2ha.dns.manual import ManualPublisher

    return ManualPublisher(), desired_records(spec)
