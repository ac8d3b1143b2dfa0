"""`rke2ha check`: verify a live deployment, DNS -> load balancer -> every node -> Rancher.

Layout (one job per module):
- `result`       — `CheckResult`, what every check returns (pass / fail / skip, detail, fix).
- `catalog`      — each check family's rule id and source.
- `target`       — where to connect: spec addresses, port offset, SNI/Host, CA, token.
- `observations` — what probes saw, as plain data.
- `verdicts`     — sans-I/O decisions: observation -> CheckResult, tested without sockets.
- `probes`       — thin asyncio adapters: HTTP(S), TLS inspection, websocket; timeouts.
- `checks`       — each named check: probe, then verdict.
- `spread`       — lb.spread's bounded sampling: which node answers through the LB.
- `runner`       — all checks at once, in a stable order, each under a time guard.
- `lbstatus`     — the built-in load balancer's admin /status: is a node in rotation?
- `drill`        — the lab failover drill behind the `FaultInjector` protocol.
- `pair_state`, `verdicts_pair`, `pair_probe` — a keepalived pair of load balancer hosts:
                   the host script and its parser, the verdicts, the SSH adapter.
- `lbdrill`, `lbdrill_run` — `--drill --lb`: the pair's failover, judged / driven.
- `session`      — one `check` run as a library call (`rke2ha check`, the lab's `up`).
- `report`       — a rich table for people, JSON for machines.
"""

# Per-probe timeout: a frozen peer fails its check within it (kept here, import-light, so
# `rke2ha --help` does not load the probes).
DEFAULT_TIMEOUT = 2.0
