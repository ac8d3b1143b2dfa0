"""Layer 7 frontends inside the layer 4 `LoadBalancer` (`rke2ha.lb.frontend_api`).

`LoadBalancer` owns the pools, active checks, admin endpoint, reload and drain for every
port; it asks a factory for each port's frontend. `L7Runtime.factory()` answers with an
`L7Frontend` for the HTTPS port (TLS ends here) and for the redirect port, and with the
ordinary layer 4 frontend for every other port (6443 and 9345 carry TLS the nodes end).
So a layer 7 spec is one process, one admin page, one SIGHUP.

What the layer 7 frontends of one process share lives in `L7Runtime`: the certificate
(reloaded on SIGHUP, see `tls.py`), the keep-alive connections to the nodes, the affinity
secret and the proxy settings.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from rke2ha.lb.config import FrontendConfig
from rke2ha.lb.frontend import bind_listener
from rke2ha.lb.l7.affinity import AffinityCookie
from rke2ha.lb.l7.backend_conns import READ_SIZE, BackendPool
from rke2ha.lb.l7.fast import FastClientProtocol, FastPath
from rke2ha.lb.l7.pool_adapter import PoolNodes
from rke2ha.lb.l7.proxy import ClientSession, ProxySettings
from rke2ha.lb.l7.redirect import RedirectPolicy
from rke2ha.lb.l7.tls import CertificateStore
from rke2ha.lb.pool import Pool
from rke2ha.secretfiles import ensure_secret

if TYPE_CHECKING:
    from rke2ha.lb.frontend_api import FrontendLike
    from rke2ha.lb.l7.settings import L7Config
    from rke2ha.lb.server import LoadBalancer

log = logging.getLogger("rke2ha.lb.l7")

_RETRY_SECONDS = 1.0  # after a failed resume (asyncio's own accept retry delay)
_PAUSE_LOG_SECONDS = 10.0  # at most one max_connections warning per this long


class L7Runtime:
    def __init__(self, config: L7Config) -> None:
        self.config = config
        self.store = CertificateStore(config.cert, config.key, config.hostname)
        self.conns = BackendPool(config.connect_timeout)
        affinity = None
        if config.affinity:
            secret = config.affinity_secret
            if secret is None and config.affinity_secret_file is not None:
                secret = bytes.fromhex(ensure_secret(config.affinity_secret_file))
            affinity = AffinityCookie(secret)
        self.https = ProxySettings(
            forwarded_proto="https",
            forwarded_port=config.forwarded_port,
            header_timeout=config.header_timeout,
            keepalive_timeout=config.keepalive_timeout,
            http_timeout=config.http_timeout,
            tunnel_timeout=config.http_timeout,
            retries=config.retries,
            affinity=affinity,
        )
        self.plain: ProxySettings | None = None
        if config.redirect_from is not None:
            policy = RedirectPolicy(
                hostname=config.hostname,
                code=config.redirect_code,
                https_port=config.forwarded_port,
                acme_passthrough=config.acme_passthrough,
            )
            self.plain = replace(
                self.https,
                redirect=policy,
                forwarded_proto="http",
                forwarded_port=config.redirect_from[1],
            )

    def reload_certificate(self) -> None:
        """SIGHUP: new handshakes get the files' certificate; a failure keeps the old one."""
        try:
            loaded = self.store.reload()
        except Exception as err:  # any reload failure keeps the old certificate
            log.error("certificate reload failed, still serving the old one: %s", err)
            return
        log.info(
            "certificate reloaded: %s, valid until %s", ", ".join(loaded.names), loaded.not_after
        )

    def factory(self) -> Callable[[LoadBalancer, FrontendConfig, Pool], FrontendLike]:
        from rke2ha.lb.server import layer4_frontend

        def make(lb: LoadBalancer, fc: FrontendConfig, pool: Pool) -> FrontendLike:
            where = (fc.host, fc.port)
            if where == self.config.listen:
                return L7Frontend(fc, pool, self, self.https, tls=True)
            if where == self.config.redirect_from and self.plain is not None:
                return L7Frontend(fc, pool, self, self.plain, tls=False)
            return layer4_frontend(lb, fc, pool)

        return make


class L7Frontend:
    """One layer 7 listener and its client sessions (implements `FrontendLike`)."""

    def __init__(
        self,
        config: FrontendConfig,
        pool: Pool,
        runtime: L7Runtime,
        settings: ProxySettings,
        *,
        tls: bool,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.settings = settings
        self.tls = tls
        self.nodes = PoolNodes(pool, config.balance)
        self.accepting = False
        self.total = 0
        self.retries = 0
        self.failovers = 0
        self.failed = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._listener: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Task[None] | None = None
        self._sessions: set[ClientSession] = set()  # from the handshake until each one ends
        # Accepted, TLS handshake not finished (they count for max_connections): the handshake
        # deadline after which a connection still here has failed (see `_serve`).
        self._pending: dict[FastClientProtocol, float] = {}
        self._pause_logged = -_PAUSE_LOG_SECONDS
        self._pause_soon = False
        self.refused = 0  # accepted beyond max_connections in a burst, closed at once

    @property
    def active(self) -> int:
        return len(self._sessions)

    # Accepting. asyncio's servers cannot pause accepting, so the frontend keeps the listening
    # socket itself and serves a duplicate of it: at `max_connections` that server is closed
    # (the kernel keeps queueing new clients in the backlog of the socket kept here, as the
    # layer 4 frontend does) and a new server over a fresh duplicate resumes below the limit.
    # A connection counts from its accept (the protocol factory), not from the end of its TLS
    # handshake, so a flood of handshakes cannot overshoot the limit. A handshake that fails
    # never reaches `_on_client` (asyncio tells the protocol nothing), so such a connection
    # stops counting when the handshake deadline has surely passed (`sweep_idle`).

    def start(self) -> None:
        self._listener = bind_listener(self.config.host, self.config.port)  # names the address
        self.accepting = True
        self._resume()

    @property
    def _open(self) -> int:
        return len(self._sessions) + len(self._pending)

    def _resume(self) -> None:
        if not self.accepting or self._listener is None:
            return
        if self._server is not None or self._starting is not None:
            return
        if self._open >= self.config.max_connections:
            return
        try:
            duplicate = self._listener.dup()
        except OSError as err:  # out of descriptors, most likely: try again shortly
            log.error("%s: cannot resume accepting: %s; retrying", self.config.address, err)
            asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._resume)
            return
        self._starting = asyncio.ensure_future(self._serve(duplicate))
        self._starting.add_done_callback(self._started)

    def _pause(self) -> None:
        self._pause_soon = False
        if self._server is None or self._open < self.config.max_connections:
            return
        self._server.close()
        self._server = None
        now = time.monotonic()
        if now - self._pause_logged >= _PAUSE_LOG_SECONDS:  # at the limit this repeats often
            self._pause_logged = now
            log.warning(
                "%s: %d connections open (max_connections): new clients wait in the backlog",
                self.config.address,
                self._open,
            )

    def _started(self, task: asyncio.Task[None]) -> None:
        self._starting = None
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: cannot serve: %s; retrying", self.config.address, task.exception())
            asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._resume)
            return
        if self._open >= self.config.max_connections:
            self._pause()  # filled up while the server was starting

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        # A handshake still unfinished this long after its accept has failed or timed out
        # (asyncio's handshake deadline is header_timeout); `sweep_idle` forgets it then.
        # One dict entry, not one timer, per connection: a timer per connection kept every
        # closed connection's objects alive for the whole grace and cost ~20% of new-TLS rate.
        grace = self.settings.header_timeout + 1.0

        def protocol() -> FastClientProtocol:
            reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
            proto = FastClientProtocol(reader, self._on_client, loop=loop)
            if self._open >= self.config.max_connections:
                # Accepted in the same burst as the one that filled the last place (the loop
                # accepts a whole burst at once): closed as soon as it is made.
                proto.refused = True
            else:
                self._pending[proto] = time.monotonic() + grace
            if self._open >= self.config.max_connections and not self._pause_soon:
                # Not from inside the accept callback: uvloop attaches this connection to the
                # server after the factory returns.
                self._pause_soon = True
                loop.call_soon(self._pause)
            return proto

        try:
            server = await loop.create_server(
                protocol,
                sock=sock,
                ssl=self.runtime.store.listening_context if self.tls else None,
                ssl_handshake_timeout=self.settings.header_timeout if self.tls else None,
            )
        except BaseException:
            sock.close()
            raise
        if not self.accepting:  # stopped while starting
            server.close()
            return
        self._server = server

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proto = writer.transport.get_protocol()
        if isinstance(proto, FastClientProtocol):
            if proto.refused:
                self.refused += 1
                writer.close()
                return
            self._pending.pop(proto, None)
        self.total += 1
        session = ClientSession(
            self.settings, self.nodes, self.runtime.conns, reader, writer, stats=self
        )
        self._sessions.add(session)
        session.on_done = self._forget
        session.start()

    def _forget(self, session: FastPath) -> None:
        self._sessions.discard(cast(ClientSession, session))
        self._resume()

    def stop_accepting(self) -> None:
        """Close the listener; idle keep-alive clients are closed now, a request in flight
        finishes with `Connection: close`, a websocket runs on until the drain ends."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for session in list(self._sessions):
            session.closing = True
            if not session.busy:
                session.cancel()

    def sweep_idle(self, now: float) -> int:
        """Forget accepted connections whose TLS handshake failed (asyncio does not say so).

        Sessions keep their own deadlines (header, keep-alive, http, tunnel).
        """
        failed = [proto for proto, deadline in self._pending.items() if deadline <= now]
        for proto in failed:
            del self._pending[proto]
        if failed:
            self._resume()
        return 0

    def close_sessions(self, outcome: str, only: Callable[[Any], bool] | None = None) -> int:
        doomed = [s for s in self._sessions if only is None or only(s)]
        for session in doomed:
            session.cancel()
        if doomed:
            log.info("closed %d layer 7 connections (%s)", len(doomed), outcome)
        return len(doomed)
