"""How many open files a rendered haproxy.cfg needs, and what fits under a given limit.

HAProxy sizes its descriptor table at start: 10 reserved, one per listener (`bind`), one per
server with `check`, two per connection (client side and server side) up to the global
`maxconn`, and per thread one poller descriptor plus a two-descriptor wake-up pipe. It then
raises RLIMIT_NOFILE to that number; since HAProxy 2.6 `strict-limits` is the default, so
when the hard limit is lower it refuses to start ("Cannot raise FD limit to N, limit is M";
openshift/router#527 on the 2.6 default). The rendered config says `no strict-limits`: it
starts, warns with the number, and only connections beyond the limit fail; the header
states the need and `up` checks it first. The formula was measured against HAProxy 2.6.12:
maxconn 10000, 5 listeners, 12 checked servers, 2 threads -> 20033; maxconn 1000, 5
listeners, 9 checked servers, 2 threads -> 2030. A `stats socket` (the runtime API) adds its
listener and the CLI's own connection limit, 10 unless `stats maxconn` says otherwise
(HAProxy management guide, "stats maxconn"): measured +11 and, with `stats maxconn 5`, +6.
Pure: text in, numbers out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RESERVED = 10
PER_CONNECTION = 2
PER_THREAD = 3  # poller fd + wake-up pipe
MAX_THREADS = 64  # HAProxy's default thread count: one per CPU, at most 64

_MAXCONN = re.compile(r"^\s*maxconn\s+(\d+)\s*$", re.MULTILINE)
_BIND = re.compile(r"^\s*bind\s", re.MULTILINE)
_STATS_SOCKET = re.compile(r"^\s*stats\s+socket\s", re.MULTILINE)
_STATS_MAXCONN = re.compile(r"^\s*stats\s+maxconn\s+(\d+)\s*$", re.MULTILINE)
CLI_MAXCONN = 10  # HAProxy's default `stats maxconn`
_CHECKED_SERVER = re.compile(r"^\s*server\s.*\scheck(\s|$)", re.MULTILINE)


@dataclass(frozen=True)
class FdNeed:
    maxconn: int
    listeners: int
    checks: int
    cli: int = 0  # stats sockets: each its listener plus the CLI's connection limit

    @property
    def fixed(self) -> int:
        """Descriptors that do not depend on connections or threads."""
        return RESERVED + self.listeners + self.checks + self.cli

    def total(self, threads: int) -> int:
        return PER_CONNECTION * self.maxconn + self.fixed + PER_THREAD * threads

    def max_connections_within(self, limit: int, threads: int) -> int:
        """The largest `maxconn` whose need fits under `limit` open files (0 if none)."""
        return max(0, (limit - self.fixed - PER_THREAD * threads) // PER_CONNECTION)


def fd_need(config_text: str) -> FdNeed:
    """The descriptor need of a haproxy.cfg (its global `maxconn`, binds and checks)."""
    match = _MAXCONN.search(config_text)
    if match is None:
        raise ValueError("no global maxconn in the HAProxy config")
    return FdNeed(
        maxconn=int(match.group(1)),
        listeners=len(_BIND.findall(config_text)),
        checks=len(_CHECKED_SERVER.findall(config_text)),
        cli=_cli_descriptors(config_text),
    )


def _cli_descriptors(config_text: str) -> int:
    sockets = len(_STATS_SOCKET.findall(config_text))
    limit = _STATS_MAXCONN.search(config_text)
    return sockets * (1 + (int(limit.group(1)) if limit else CLI_MAXCONN))
