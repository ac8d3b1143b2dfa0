"""The layer 7 kinds of frontend (`https`, `redirect`) of the one `LoadBalancer`.

`LoadBalancer` owns the pools, active checks, admin endpoint, reload and drain for every
port and picks each port's frontend by its `kind` (`rke2ha.lb.config`): `tcp` ports get the
layer 4 relay, `https` and `redirect` ports an `L7Frontend` (`rke2ha.lb.frontend_api`).
So a layer 7 spec is one process (or one supervisor of `--workers`), one admin page, one
SIGHUP.

What the layer 7 frontends of one process share lives in `L7Runtime`: the certificate
(reloaded on SIGHUP, see `tls.py`), the keep-alive connections to the nodes, the affinity
key and the proxy settings built from `LbConfig.l7`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from rke2ha.lb.accesslog import AccessLog
from rke2ha.lb.config import FrontendConfig, L7Settings
from rke2ha.lb.frontend import bind_listener
from rke2ha.lb.l7.affinity import AffinityCookie, affinity_key
from rke2ha.lb.l7.backend_conns import READ_SIZE, BackendPool
from rke2ha.lb.l7.fast import FastClientProtocol, FastPath
from rke2ha.lb.l7.pool_adapter import PoolNodes
from rke2ha.lb.l7.proxy import ClientSession, ProxySettings
from rke2ha.lb.l7.redirect import RedirectPolicy
from rke2ha.lb.l7.tls import CertificateStore
from rke2ha.lb.l7.tls_transport import TLSSocketTransport, wrap_accepted
from rke2ha.lb.pool import Pool

log = logging.getLogger("rke2ha.lb.l7")

_RETRY_SECONDS = 1.0  # after a failed accept (asyncio's own accept retry delay)
_ACCEPTS_PER_TURN = 64  # clients accepted per readiness of the listener, then the others run
_PAUSE_LOG_SECONDS = 10.0  # at most one max_connections warning per this long


class L7Runtime:
    def __init__(self, settings: L7Settings, connect_timeout: float, access_log: AccessLog) -> None:
        self.settings = settings
        self.access_log = access_log
        self.store = CertificateStore(settings.cert, settings.key, settings.hostname)
        self.conns = BackendPool(connect_timeout)
        self.affinity = AffinityCookie(affinity_key(settings)) if settings.affinity else None

    def update(self, settings: L7Settings) -> None:
        """SIGHUP: the certificate is re-read (a failure keeps the old one) and the settings
        apply to requests from now on; requests in flight finish with the old ones."""
        if settings.affinity != self.settings.affinity or (
            settings.affinity_secret_file != self.settings.affinity_secret_file
        ):
            self.affinity = AffinityCookie(affinity_key(settings)) if settings.affinity else None
        store = self.store
        before = (store.cert, store.key, store.hostname)
        store.cert, store.key, store.hostname = settings.cert, settings.key, settings.hostname
        if not self.reload_certificate():
            store.cert, store.key, store.hostname = before
            settings = replace(settings, cert=before[0], key=before[1], hostname=before[2] or "")
        self.settings = settings

    def proxy_settings(self, fc: FrontendConfig) -> ProxySettings:
        """How the sessions of frontend `fc` (kind https or redirect) proxy and answer."""
        l7 = self.settings
        https = ProxySettings(
            forwarded_proto="https",
            forwarded_port=l7.forwarded_port,
            header_timeout=l7.header_timeout,
            keepalive_timeout=l7.keepalive_timeout,
            http_timeout=fc.idle_timeout,
            tunnel_timeout=fc.idle_timeout,
            retries=fc.retries,
            affinity=self.affinity,
            access_log=self.access_log,
        )
        if fc.kind == "https":
            return https
        policy = RedirectPolicy(
            hostname=l7.hostname,
            code=l7.redirect_code,
            https_port=l7.forwarded_port,
            acme_passthrough=l7.acme_passthrough,
        )
        return replace(https, redirect=policy, forwarded_proto="http", forwarded_port=fc.port)

    def frontend(self, fc: FrontendConfig, pool: Pool) -> L7Frontend:
        return L7Frontend(fc, pool, self, self.proxy_settings(fc), tls=fc.kind == "https")

    def reload_certificate(self) -> bool:
        """New handshakes get the files' certificate; a failure keeps the old one (False)."""
        try:
            loaded = self.store.reload()
        except Exception as err:  # any reload failure keeps the old certificate
            log.error("certificate reload failed, still serving the old one: %s", err)
            return False
        log.info(
            "certificate reloaded: %s, valid until %s", ", ".join(loaded.names), loaded.not_after
        )
        return True


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
        self._listening = False  # the listener is watched for clients to accept
        self._sessions: set[ClientSession] = set()  # from the handshake until each one ends
        # Accepted, TLS handshake (or plain connection setup) not finished: they count for
        # max_connections until then, and are abandoned at their deadline (`sweep_idle`).
        self._pending: dict[object, float] = {}
        self._pause_logged = -_PAUSE_LOG_SECONDS

    @property
    def active(self) -> int:
        return len(self._sessions)

    # Accepting. The frontend accepts itself (readiness of the listening socket): at
    # `max_connections` it stops asking, so new clients wait in the kernel's backlog as
    # they do at layer 4, and it asks again once a connection ends. A connection counts
    # from its accept, not from the end of its TLS handshake, so a flood of handshakes
    # cannot overshoot the limit. TLS runs on the socket itself (`tls_transport`); a
    # handshake still unfinished at its deadline is abandoned by `sweep_idle` (one dict
    # entry per handshake, not one timer: a timer per connection kept every closed
    # connection's objects alive for the whole grace and cost ~20% of the new-TLS rate).

    def start(self) -> None:
        self._listener = bind_listener(self.config.host, self.config.port)  # names the address
        self.accepting = True
        self._resume()

    @property
    def _open(self) -> int:
        return len(self._sessions) + len(self._pending)

    def _resume(self) -> None:
        if not self.accepting or self._listener is None or self._listening:
            return
        if self._open >= self.config.max_connections:
            return
        self._listening = True
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._on_acceptable)

    def _pause(self) -> None:
        if self._listening and self._listener is not None:
            self._listening = False
            asyncio.get_running_loop().remove_reader(self._listener.fileno())

    def _on_acceptable(self) -> None:
        listener = self._listener
        if listener is None:
            return
        limit = self.config.max_connections
        for _ in range(_ACCEPTS_PER_TURN):
            if self._open >= limit:
                self._pause()
                now = time.monotonic()
                if now - self._pause_logged >= _PAUSE_LOG_SECONDS:  # at the limit, often
                    self._pause_logged = now
                    log.warning(
                        "%s: %d connections open (max_connections): new clients wait in "
                        "the backlog",
                        self.config.address,
                        self._open,
                    )
                return
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of descriptors or buffers: try again shortly
                log.error("%s: cannot accept: %s; retrying", self.config.address, err)
                self._pause()
                asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._resume)
                return
            self._accepted(sock, peer)

    def _accepted(self, sock: socket.socket, peer: Any) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.settings.header_timeout
        if not self.tls:
            sock.setblocking(False)
            proto = self._client_protocol()
            self._pending[proto] = deadline
            task = asyncio.ensure_future(loop.connect_accepted_socket(lambda: proto, sock))
            task.add_done_callback(functools.partial(self._plain_made, proto=proto, sock=sock))
            return
        try:
            transport = wrap_accepted(
                self.runtime.store.listening_context,
                sock,
                peer,
                loop,
                self._handshake_done,
                self.runtime.conns.batch,
            )
        except (OSError, ValueError) as err:
            log.debug("cannot start TLS with %s: %s", peer, err)
            sock.close()
            return
        self._pending[transport] = deadline
        transport.start()

    def _client_protocol(self) -> FastClientProtocol:
        reader = asyncio.StreamReader(limit=READ_SIZE, loop=asyncio.get_running_loop())
        return FastClientProtocol(reader, self._on_client)

    def _handshake_done(self, transport: TLSSocketTransport, err: BaseException | None) -> None:
        self._pending.pop(transport, None)
        if err is not None:
            self._resume()
            return
        if not self.accepting:  # draining: no new sessions
            transport.close()
            return
        proto = self._client_protocol()
        transport.set_protocol(proto)
        proto.connection_made(transport)  # calls _on_client

    def _plain_made(self, task: asyncio.Future[Any], proto: object, sock: socket.socket) -> None:
        if task.cancelled() or task.exception() is not None:
            self._pending.pop(proto, None)
            sock.close()
            self._resume()

    def reconfigure(self, config: FrontendConfig) -> None:
        """A reload: new sessions get the new settings; open ones keep theirs."""
        self.config = config
        self.nodes.balance = config.balance
        self.settings = self.runtime.proxy_settings(config)

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._pending.pop(writer.transport.get_protocol(), None)
        self.total += 1
        session = ClientSession(
            self.settings,
            self.nodes,
            self.runtime.conns,
            reader,
            writer,
            stats=self,
            frontend=self.config.name,
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
        self._pause()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for session in list(self._sessions):
            session.closing = True
            if not session.busy:
                session.cancel()

    def sweep_idle(self, now: float) -> int:
        """Abandon TLS handshakes (and plain connections not yet made) past their deadline.

        Sessions keep their own deadlines (header, keep-alive, http, tunnel).
        """
        failed = [entry for entry, deadline in self._pending.items() if deadline <= now]
        for entry in failed:
            if isinstance(entry, TLSSocketTransport):
                entry.fail_handshake(TimeoutError("TLS handshake deadline passed"))
            self._pending.pop(entry, None)
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
