"""Before `up` starts HAProxy: can this machine give it the open files its config needs?

Below its need (`rke2ha.render.haproxy_fds`) HAProxy 2.6+ refuses to start, or with the
rendered `no strict-limits` starts with fewer connections than `max_connections` promises;
`up` says so first, with the fix, instead of leaving the user a start-up alert. Whether the
limit can be raised is asked of a child process, which inherits exactly what HAProxy will
(the same user, limits and privileges).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

from rke2ha.errors import InvalidError
from rke2ha.render.haproxy_fds import MAX_THREADS, fd_need

_RAISE = (
    "import resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))"
)


def haproxy_threads() -> int:
    """HAProxy's default thread count here: one per CPU it may run on, at most 64."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_THREADS))


def can_raise_nofile(count: int) -> bool:
    """True when a process started like HAProxy can raise its open-files limit to `count`."""
    child = subprocess.run(
        [sys.executable, "-c", _RAISE, str(count)], capture_output=True, timeout=30
    )
    return child.returncode == 0


def hard_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def ensure_haproxy_fits(config_text: str) -> None:
    """InvalidError with the fix when HAProxy could not start here for lack of open files."""
    need = fd_need(config_text)
    threads = haproxy_threads()
    total = need.total(threads)
    if can_raise_nofile(total):
        return
    limit = hard_limit()
    fits = need.max_connections_within(limit, threads)
    raise InvalidError(
        f"HAProxy needs {total} open files for load_balancer.max_connections "
        f"{need.maxconn} (2 per connection, {need.listeners} listeners, {need.checks} checks, "
        f"{threads} threads) but this machine allows {limit}: connections beyond about "
        f"{fits} would fail. "
        f"Raise the open-files limit to {total} (LimitNOFILE= in the unit that runs rke2ha, or "
        f"`ulimit -n {total}` as root), or set load_balancer.max_connections to {fits} or less"
    )
