"""`provider: aws`: three EC2 servers across zones, an NLB and a Route 53 record.

- `desired`   spec -> desired resources (pure)
- `userdata`  cloud-init for each server (pure; the token is never in it)
- `session`   boto3 clients from the usual credential chain, region checked
- `errors`    AWS failures -> messages an operator can act on
- `facts`     what exists, found by tags and the state file
- `apply`     operations in dependency order, with waiters and pending entries
- `dnsrecord` the Route 53 alias + ownership TXT, through the DNS package
- `provider`  the provider protocol tying them together
"""
