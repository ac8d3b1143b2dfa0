"""Running the layer 7 front: configuration from the spec, the process, the workers.

`L7Config` (settings.py) is built from the spec (`from_spec`) or from flags (`cli.py`).
`serve()` runs the layer 4 `LoadBalancer` (pools, active checks, admin, reload, drain)
with layer 7 frontends for the HTTPS and redirect ports (`frontend.py`) and layer 4 ones
for the rest. SIGTERM/SIGINT: stop accepting, let requests in flight end for up to
`drain_timeout`, exit. SIGHUP reloads the certificate without closing a connection (a
reload that fails keeps the old one and logs why) and, for a spec, the backend set.
uvloop runs the loop when it is installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace

from rke2ha.errors import Rke2haError, UsageError
from rke2ha.lb import config as l4config
from rke2ha.lb import loops
from rke2ha.lb.config import ADMIN_FLAG, BackendConfig, FrontendConfig, HealthConfig, LbConfig
from rke2ha.lb.l7.frontend import L7Runtime
from rke2ha.lb.l7.settings import HostPort, L7Config
from rke2ha.lb.l7.tls import load_certificate
from rke2ha.spec import Spec

log = logging.getLogger("rke2ha.lb.l7")


# Ports the layer 7 front itself serves; the spec's other ports (6443, 9345) stay layer 4.
L7_PORTS = (80, 443)


def l4_companion(spec: Spec, *, port_offset: int = 0) -> tuple[HealthConfig, LbConfig]:
    """From the layer 4 code: the ingress health of 443 and the layer 4 side of a layer 7 spec.

    The Kubernetes API (6443) and the supervisor (9345) carry TLS the nodes terminate, so
    they are relayed at layer 4 even when `layer: 7`; their checks come from the healthplan.
    """
    as_l4 = spec.model_copy(deep=True)
    as_l4.load_balancer.layer = 4
    as_l4.load_balancer.ports = sorted(set(spec.load_balancer.ports) | {443})
    full = l4config.from_spec(as_l4, port_offset=port_offset)
    https = next(f for f in full.frontends if f.port == 443 + port_offset)
    rest = tuple(f for f in full.frontends if f.port - port_offset not in L7_PORTS)
    rest = tuple(f for f in rest if f.port - port_offset in spec.load_balancer.ports)
    return https.health, replace(full, frontends=rest)


def from_spec(spec: Spec, *, port_offset: int = 0) -> L7Config:
    """The layer 7 front of a spec: 443 terminates TLS, 80 redirects, nodes on port 80."""
    lb = spec.load_balancer
    if lb.layer != 7:
        raise UsageError("load_balancer.layer is 4; the layer 7 front needs layer: 7")
    if lb.tls is None:
        raise UsageError(
            "load_balancer.tls is not set; layer 7 needs {cert: FILE, key: FILE} "
            f"for {spec.hostname}"
        )
    if not lb.address:
        raise UsageError("load_balancer.address is not set; the front needs an address")
    missing = [n.name for n in spec.nodes if not n.address]
    if missing:
        raise UsageError(f"nodes without an address: {', '.join(missing)}; set nodes[].address")
    backends = tuple((str(n.address), 80 + port_offset) for n in spec.nodes)
    health, _ = l4_companion(spec, port_offset=port_offset)
    return L7Config(
        listen=(lb.address, 443 + port_offset),
        hostname=spec.hostname,
        cert=spec.resolve(lb.tls.cert),
        key=spec.resolve(lb.tls.key),
        backends=backends,
        redirect_from=(lb.address, 80 + port_offset) if 80 in lb.ports else None,
        redirect_code=lb.redirect_code,
        acme_passthrough=lb.acme_passthrough,
        affinity=lb.affinity == "cookie",
        affinity_secret_file=spec.state_dir / "secrets" / f"{spec.name}-lb-affinity",
        balance=lb.balance,
        connect_timeout=lb.connect_timeout,
        http_timeout=lb.http_timeout,
        retries=lb.retries,
        max_connections=lb.max_connections,
        drain_timeout=lb.drain_timeout,
        # The port clients reach: 443, or 443 + offset for a lab run unprivileged; the
        # port 80 redirect and X-Forwarded-Port (Rancher's own links) must name it.
        forwarded_port=443 + port_offset,
        names={f"{h}:{p}": str(n.name) for (h, p), n in zip(backends, spec.nodes, strict=True)},
        health=health,
    )


def configure_logging(access_log: str | None) -> None:
    """Messages to stderr; the JSON access log to stdout ("-"), a file, or nowhere."""
    root = logging.getLogger("rke2ha.lb")
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    access = logging.getLogger("rke2ha.lb.l7.access")
    access.propagate = False
    access.handlers.clear()
    if access_log is None:
        access.setLevel(logging.CRITICAL + 1)
        return
    target: logging.Handler = (
        logging.StreamHandler(sys.stdout)
        if access_log == "-"
        else logging.FileHandler(access_log, encoding="utf-8")
    )
    target.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(target)
    access.setLevel(logging.INFO)


def lb_config(config: L7Config, base: LbConfig | None = None) -> LbConfig:
    """The `LbConfig` the layer 4 `LoadBalancer` runs: the HTTPS and redirect frontends of
    `config` (their pools and checks), plus `base`'s other frontends (a spec's 6443/9345)."""
    backends = tuple(
        BackendConfig(h, p, config.names.get(f"{h}:{p}", "")) for h, p in config.backends
    )

    def frontend(name: str, where: HostPort, nodes: tuple[BackendConfig, ...]) -> FrontendConfig:
        return FrontendConfig(
            name=name,
            host=where[0],
            port=where[1],
            backends=nodes,
            health=config.health,
            balance=config.balance,
            connect_timeout=config.connect_timeout,
            idle_timeout=config.http_timeout,
            retries=config.retries,
            max_connections=config.max_connections,
        )

    frontends = [frontend(f"https-{config.listen[1]}", config.listen, backends)]
    if config.redirect_from is not None:
        # The redirect answers itself: it has nodes (and checks them) only when ACME
        # challenges pass through to them. A list of nodes it never uses would only mislead
        # the status page and double the health checks.
        passing = backends if config.acme_passthrough else ()
        name = f"redirect-{config.redirect_from[1]}"
        frontends.append(frontend(name, config.redirect_from, passing))
    ours = {config.listen, config.redirect_from}
    if base is not None:
        frontends += [f for f in base.frontends if (f.host, f.port) not in ours]
    return LbConfig(
        frontends=tuple(frontends),
        admin=config.admin if base is None else base.admin,
        admin_from=ADMIN_FLAG if base is None else base.admin_from,
        drain_timeout=config.drain_timeout,
        access_log=config.access_log,
    )


async def serve(
    config: L7Config,
    base: LbConfig | None = None,
    reload_source: Callable[[], tuple[L7Config, LbConfig | None]] | None = None,
) -> None:
    """Run the LoadBalancer with layer 7 frontends until SIGTERM/SIGINT, then drain.

    SIGHUP reloads the certificate, then (for a spec) re-reads it and applies the new
    backend set the layer 4 way: new nodes join, removed ones drain.
    """
    from rke2ha.lb.server import LoadBalancer

    runtime = L7Runtime(config)

    def reread() -> LbConfig:
        runtime.reload_certificate()
        if reload_source is None:
            return lb.config  # started from flags: only the certificate is re-read
        new_config, new_base = reload_source()
        return lb_config(new_config, new_base)

    lb = LoadBalancer(
        lb_config(config, base), reload_source=reread, frontend_factory=runtime.factory()
    )
    await lb.serve()
    runtime.conns.close_all()


def run(
    config: L7Config,
    base: LbConfig | None = None,
    workers: int = 1,
    reload_source: Callable[[], tuple[L7Config, LbConfig | None]] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; the process exit code.

    `workers` > 1 forks that many processes, each with its own listeners on the same ports
    (SO_REUSEPORT: the kernel spreads connections) and its own checks; the parent only
    forwards signals. Certificate and addresses are checked before the fork, so a mistake
    is one message, not N. The affinity secret is made before the fork so a cookie pins
    the same node whichever worker reads it. Worker 0 alone serves the admin endpoint.
    """
    configure_logging(config.access_log)
    load_certificate(config.cert, config.key, config.hostname)  # fail before binding
    if workers <= 1:
        loops.run(serve(config, base, reload_source))
        return 0
    for where, flag in ((config.listen, "--listen"), (config.redirect_from, "--redirect-from")):
        if where is not None:
            _probe_bind(where, flag)
    if config.affinity and config.affinity_secret is None and config.affinity_secret_file is None:
        config = replace(config, affinity_secret=secrets.token_bytes(32))
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            _die_with_parent()
            code = 0
            mine = config if index == 0 else replace(config, admin=None)
            my_base = base if index == 0 or base is None else replace(base, admin=None)
            try:
                loops.run(serve(mine, my_base, reload_source))
            except Rke2haError as err:
                print(f"rke2ha lb serve: worker {index}: {err}", file=sys.stderr)
                code = err.exit_code
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    codes = [os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]
    return max(codes)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the parent dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _probe_bind(where: HostPort, flag: str) -> None:
    family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(where)
        except OSError as err:
            raise UsageError(
                f"{flag} {where[0]}:{where[1]}: cannot listen: {err.strerror or err}"
            ) from None
