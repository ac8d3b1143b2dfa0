"""The load balancer process: frontends, pools, checks, admin, signals, reload and drain.

Lifecycle:
- `start()` binds every frontend (SO_REUSEPORT) and the admin endpoint, starts the checks.
- SIGHUP: `reload_source()` builds a new `LbConfig` (re-reading the spec) and the
  difference (`reload.plan_reload`) is applied without dropping an established connection.
- SIGTERM / SIGINT: stop accepting (queued clients are still taken), let established
  connections finish for up to `drain_timeout`, then close what is left and exit. A new
  process started on the same ports meanwhile takes the new clients (handover).

The server is also the unit `--workers` builds on (`workers.py`): a worker runs the data
plane with health adopted from the supervisor, the supervisor runs checks and admin.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rke2ha.errors import InvalidError, Rke2haError
from rke2ha.lb.accesslog import AccessLog, utc_time
from rke2ha.lb.admin import Snapshot, start_admin
from rke2ha.lb.checks import Checker
from rke2ha.lb.config import FrontendConfig, LbConfig
from rke2ha.lb.frontend import Frontend, Session, bind_hint
from rke2ha.lb.frontend_api import FrontendLike
from rke2ha.lb.health_state import Change
from rke2ha.lb.pool import Backend, Pool
from rke2ha.lb.relay import SPLICE_AVAILABLE, PipePool
from rke2ha.lb.reload import plan_reload

if TYPE_CHECKING:
    from rke2ha.lb.l7.frontend import L7Runtime

log = logging.getLogger("rke2ha.lb")


def reread(reload_source: Callable[[], LbConfig] | None) -> LbConfig | None:
    """The configuration SIGHUP asks for, or None (logged) when there is none to apply."""
    if reload_source is None:
        log.info("reload: started from flags, nothing to re-read")
        return None
    try:
        return reload_source()
    except Rke2haError as err:
        log.error("reload failed, keeping the running configuration: %s", err)
        return None


SWEEP_INTERVAL = 1.0


@dataclass
class Site:
    """One frontend with its pool and its checker."""

    config: FrontendConfig
    pool: Pool
    frontend: FrontendLike | None
    checker: Checker | None


def backend_status(backend: Backend, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "name": backend.config.label,
        "address": backend.key,
        # `drain`: an operator took the node out (`rke2ha lb drain`); `health` keeps what the
        # checks say meanwhile, so the operator sees whether it is fit to come back.
        "state": "drain" if backend.maintenance_since is not None else backend.state.value,
        "health": backend.state.value,
        "maintenance_since": (
            utc_time(backend.maintenance_since) if backend.maintenance_since is not None else None
        ),
        "serves": backend.serves,
        "reason": backend.machine.last_reason,
        # When the current state began (start of the process, or the last change), how
        # often it changed and left rotation: a flapping node is visible as such.
        "since": utc_time(backend.since),
        "since_age_s": round(max(0.0, now - backend.since), 3),
        "changes": backend.changes,
        "went_down": backend.went_down,
        "recent_changes": [
            {"at": utc_time(c.at), "from": c.old.value, "to": c.new.value, "reason": c.reason}
            for c in reversed(backend.history)
        ],
        "active": backend.active,
        "total": backend.total,
        "connect_failures": backend.connect_failures,
        "bytes_to_backend": backend.bytes_out,
        "bytes_from_backend": backend.bytes_in,
        "check_latency_s": round(backend.check_latency, 6),
        "checks_failed": backend.checks_failed,
        "last_check": backend.last_check,
    }


def _migrate_req_off() -> bool:
    try:
        return Path("/proc/sys/net/ipv4/tcp_migrate_req").read_text().strip() == "0"
    except OSError:
        return False


def layer4_frontend(lb: LoadBalancer, config: FrontendConfig, pool: Pool) -> FrontendLike:
    """A `tcp` frontend: relays bytes (`frontend.Frontend`)."""
    return Frontend(
        config,
        pool,
        loop=asyncio.get_running_loop(),
        pipes=lb.pipes,
        access_log=lb.access_log,
        adaptive=lb.config.relay == "auto",
    )


def _on(backend: Backend) -> Callable[[Session], bool]:
    return lambda session: session.backend is backend


class LoadBalancer:
    def __init__(
        self,
        config: LbConfig,
        *,
        reload_source: Callable[[], LbConfig] | None = None,
        data_plane: bool = True,
        checks: bool = True,
        admin: bool = True,
    ) -> None:
        self.config = config
        # The layer 7 frontends' shared parts, made with the first of them (`_frontend`).
        self.l7: L7Runtime | None = None
        self.reload_source = reload_source
        self.data_plane, self.checks, self.admin = data_plane, checks, admin
        self.sites: list[Site] = []
        self.retired: list[Site] = []  # frontends removed by a reload, still draining
        use_splice = config.relay != "copy" and SPLICE_AVAILABLE
        self.pipes = PipePool(config.pipe_pool) if use_splice and data_plane else None
        self.access_log = AccessLog(config.access_log if data_plane else None)
        self.started = time.monotonic()
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_change: Callable[[Site, Backend, Change], None] | None = None
        # `--workers`: the supervisor fills in the workers' counters (workers.py).
        self.decorate: Callable[[Snapshot], Snapshot] | None = None
        # Nodes an operator took out for maintenance (name -> wall time): survives a reload,
        # so a backend that joins again on SIGHUP stays out too.
        self.maintenance: dict[str, float] = {}

    # ---- setup -------------------------------------------------------------------------------

    def _site(self, fc: FrontendConfig) -> Site:
        pool = Pool(fc.backends, rise=fc.health.rise, fall=fc.health.fall, balance=fc.balance)
        site = Site(fc, pool, None, None)
        pool.listener = lambda backend, change: self._log_change(site, backend, change)
        for backend in pool.backends:
            backend.listener = pool.listener
        if self.data_plane:
            site.frontend = self._frontend(fc, pool)
        if self.checks:
            site.checker = Checker(pool, fc.health)
        return site

    def _frontend(self, fc: FrontendConfig, pool: Pool) -> FrontendLike:
        """The frontend of `fc`'s kind: the layer 4 relay, or a layer 7 one."""
        if fc.kind == "tcp":
            return layer4_frontend(self, fc, pool)
        settings = self.config.l7
        if settings is None:
            raise InvalidError(f"{fc.name}: a {fc.kind} frontend needs the layer 7 settings")
        if self.l7 is None:
            from rke2ha.lb.l7.frontend import L7Runtime  # loaded only for layer 7

            self.l7 = L7Runtime(settings, fc.connect_timeout, self.access_log)
        return self.l7.frontend(fc, pool)

    def _log_change(self, site: Site, backend: Backend, change: Change) -> None:
        level = logging.WARNING if not change.new.serves else logging.INFO
        log.log(
            level,
            "%s backend %s (%s): %s -> %s: %s",
            site.config.name,
            backend.config.label,
            backend.key,
            change.old.value,
            change.new.value,
            change.reason,
        )
        if self.on_change is not None:
            self.on_change(site, backend, change)

    async def start(self) -> None:
        sites = [self._site(fc) for fc in self.config.frontends]
        try:
            for site in sites:
                if site.frontend is not None:
                    site.frontend.start()
        except Rke2haError:
            for site in sites:
                if site.frontend is not None:
                    site.frontend.stop_accepting()
            raise
        self.sites = sites
        for site in sites:
            if site.checker is not None:
                site.checker.sync()
        if self.admin and self.config.admin is not None:
            host, port = self.config.admin
            try:
                self._runner = await start_admin(
                    self.snapshot, host, port, control=self.set_maintenance
                )
            except OSError as err:
                await self.close()
                hint = bind_hint(err, "another program may hold it") or "it cannot be used"
                raise InvalidError(
                    f"cannot serve the admin endpoint on {host}:{port}: {err.strerror} "
                    f"({hint}); choose another with {self.config.admin_from}"
                ) from None
        self._spawn(self._sweeper())
        verb = "listening on" if self.data_plane else "checking backends of"
        for site in sites:
            log.info(
                "%s: %s %s -> %s; health: %s; balance %s",
                site.config.name,
                verb,
                site.config.address,
                ", ".join(b.key for b in site.config.backends),
                site.config.health.why,
                site.config.balance,
            )
        if self._runner is not None and self.config.admin is not None:
            log.info(
                "admin: http://%s:%s/ (metrics at /metrics, JSON at /status)", *self.config.admin
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- periodic work ----------------------------------------------------------------------

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep(asyncio.get_running_loop().time())

    def sweep(self, now: float) -> None:
        """Idle timeouts, drain deadlines, forgetting drained backends and frontends."""
        mono = time.monotonic()
        for site in self.sites + self.retired:
            frontend = site.frontend
            if frontend is not None:
                frontend.sweep_idle(mono)
                for backend in site.pool.draining:
                    removed = backend.removed_at or now
                    if now - removed >= self.config.drain_timeout and backend.active:
                        closed = frontend.close_sessions("drain-timeout", _on(backend))
                        log.warning(
                            "%s backend %s: drain timeout, closed %d connections",
                            site.config.name,
                            backend.key,
                            closed,
                        )
            for backend in site.pool.forget_idle_drained():
                log.info("%s backend %s: drained, removed", site.config.name, backend.key)
        for site in list(self.retired):
            if site.frontend is None or site.frontend.active == 0:
                self.retired.remove(site)
                log.info("%s: drained, removed", site.config.name)

    # ---- reload -------------------------------------------------------------------------------

    async def reload(self) -> None:
        new = reread(self.reload_source)
        if new is not None:
            self.apply(await self.move_admin(new))

    async def move_admin(self, new: LbConfig) -> LbConfig:
        """A reload that moves the admin endpoint: the new one first; if it cannot be
        served, the old one stays (and so does the config naming it)."""
        if not self.admin or new.admin == self.config.admin:
            return new
        runner = None
        if new.admin is not None:
            try:
                runner = await start_admin(self.snapshot, *new.admin, control=self.set_maintenance)
            except OSError as err:
                log.error("reload: cannot serve the admin endpoint on %s:%s: %s", *new.admin, err)
                return replace(new, admin=self.config.admin, admin_from=self.config.admin_from)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = runner
        return new

    def apply(self, new: LbConfig) -> None:
        plan = plan_reload(self.config, new)
        log.info("reload: %s", plan.summary())
        if self.l7 is not None and new.l7 is not None:
            # Certificate, redirect, affinity and deadlines: for requests from now on.
            self.l7.update(new.l7)
        self.config = new  # new frontends are built with the new layer 7 settings
        now = asyncio.get_running_loop().time()
        by_address = {s.config.address: s for s in self.sites}
        for fc in plan.removed:
            site = by_address.pop(fc.address)
            self._retire(site, now)
        for change in plan.changed:
            site = by_address[change.old.address]
            site.config = change.new
            site.pool.balance = change.new.balance
            site.pool.update(change.new.backends, now)
            if site.frontend is not None:
                site.frontend.reconfigure(change.new)
            if site.checker is not None:
                if change.health_changed:
                    self._spawn(site.checker.stop())
                    site.pool.rise, site.pool.fall = change.new.health.rise, change.new.health.fall
                    site.checker = Checker(site.pool, change.new.health)
                site.checker.sync()
        added = []
        for fc in plan.added:
            site = self._site(fc)
            try:
                if site.frontend is not None:
                    site.frontend.start()
            except Rke2haError as err:
                log.error("reload: %s", err)
                continue
            if site.checker is not None:
                site.checker.sync()
            added.append(site)
        self.sites = list(by_address.values()) + added
        if self.l7 is not None:
            for site in self.sites:
                if site.frontend is not None and site.config.kind != "tcp":
                    site.frontend.reconfigure(site.config)
        self._apply_maintenance()

    def _retire(self, site: Site, now: float) -> None:
        if site.frontend is not None:
            site.frontend.stop_accepting()
        site.pool.update((), now)
        if site.checker is not None:
            self._spawn(site.checker.stop())
        self.retired.append(site)

    # ---- maintenance (`rke2ha lb drain` / `lb enable`) ---------------------------------------

    def node_names(self) -> list[str]:
        names = {b.config.name for site in self.sites for b in site.pool.backends}
        return sorted(n for n in names if n)

    def set_maintenance(self, node: str, drain: bool) -> list[str]:
        """Take `node` out of (drain=True) or back into rotation on every frontend.

        Open connections are left alone: only new ones avoid the node. Returns the
        frontends touched; KeyError when no backend has that node name.
        """
        if node not in self.node_names():
            raise KeyError(node)
        if drain:
            self.maintenance.setdefault(node, time.time())
        else:
            self.maintenance.pop(node, None)
        touched = self._apply_maintenance(node)
        log.warning(
            "%s: %s on %s", node, "drain (maintenance)" if drain else "enabled", ", ".join(touched)
        )
        return touched

    def _apply_maintenance(self, only: str | None = None) -> list[str]:
        touched = []
        for site in self.sites:
            for backend in site.pool.backends:
                name = backend.config.name
                if not name or (only is not None and name != only):
                    continue
                backend.maintenance_since = self.maintenance.get(name)
                touched.append(site.config.name)
        return touched

    # ---- status ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        frontends = []
        for site in self.sites + self.retired:
            fe = site.frontend
            frontends.append(
                {
                    "name": site.config.name,
                    "address": site.config.address,
                    "health": site.config.health.why,
                    "balance": site.config.balance,
                    "accepting": bool(fe and fe.accepting),
                    "active": fe.active if fe else 0,
                    "total": fe.total if fe else 0,
                    "retries": fe.retries if fe else 0,
                    "failovers": fe.failovers if fe else 0,
                    "failed": fe.failed if fe else 0,
                    "bytes_from_clients": fe.bytes_up if fe else 0,
                    "bytes_to_clients": fe.bytes_down if fe else 0,
                    "backends": [backend_status(b) for b in site.pool.all()],
                }
            )
        pipes = self.pipes
        snap = {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "workers": self.config.workers,
            "relay": "splice" if pipes is not None else "copy",
            "pipes": {
                "limit": pipes.limit if pipes else 0,
                "created": pipes.created if pipes else 0,
                "in_use": pipes.in_use if pipes else 0,
                "exhausted": pipes.exhausted if pipes else 0,
            },
            "frontends": frontends,
        }
        return self.decorate(snap) if self.decorate is not None else snap

    # ---- running and stopping -------------------------------------------------------------

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT, then drain and close."""
        await self.start()
        self.install_signals()
        await self._stop.wait()
        await self.drain()

    async def drain(self) -> None:
        """Stop accepting; wait up to drain_timeout for connections to end; close the rest."""
        frontends = [s.frontend for s in self.sites + self.retired if s.frontend is not None]
        for frontend in frontends:
            frontend.stop_accepting()
        if _migrate_req_off():
            log.info(
                "handover: a client whose handshake completes in the instant the listener "
                "closes is reset unless net.ipv4.tcp_migrate_req=1 (Linux >= 5.14) moves it "
                "to the new process"
            )
        active = sum(f.active for f in frontends)
        log.info(
            "stopping: no new connections; draining %d (up to %gs)",
            active,
            self.config.drain_timeout,
        )
        deadline = time.monotonic() + self.config.drain_timeout
        while any(f.active for f in frontends) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        closed = sum(f.close_sessions("shutdown") for f in frontends)
        if closed:
            log.warning("stopping: drain timeout, closed %d connections", closed)
        await self.close()
        log.info("stopped")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for site in self.sites + self.retired:
            if site.checker is not None:
                await site.checker.stop()
            if site.frontend is not None:
                site.frontend.stop_accepting()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.access_log.close()
        if self.l7 is not None:
            self.l7.conns.close_all()
        if self.pipes is not None:
            self.pipes.close()
