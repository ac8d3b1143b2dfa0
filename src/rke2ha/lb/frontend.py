"""One listening port: accept, pick a backend, connect (with retries), hand over to the relay.

- The listener has SO_REUSEPORT, so `--workers` processes and a new process taking over
  during an upgrade can listen on the same port.
- Connect is non-blocking with `connect_timeout`; a refused or timed-out connect is
  passive evidence (the backend goes down at once, `Pool.connect_failed`) and the client
  is retried on the next serving backend, at most `1 + retries` backends in all. The client
  never sees the dead node: its bytes wait in its socket until a backend answers.
- At `max_connections` the frontend stops accepting (clients wait in the kernel backlog)
  instead of accepting and failing them; it resumes below the limit.
- Stopping (SIGTERM, handover, reload removing the port) accepts what is already queued,
  closes the listener and lets established connections finish, up to a deadline.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from functools import partial

from rke2ha.errors import InvalidError
from rke2ha.lb.accesslog import AccessLog
from rke2ha.lb.config import FrontendConfig
from rke2ha.lb.poller import poller_for
from rke2ha.lb.pool import Attempt, Backend, Pool
from rke2ha.lb.proxyproto import proxy_v2_header
from rke2ha.lb.relay import PipePool, Relay

# Sockets made non-blocking from birth (Linux): no FIONBIO ioctl for each connect.
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
log = logging.getLogger("rke2ha.lb")

_ACCEPT_BURST = 64
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_DESCRIPTOR_PAUSE = 0.1  # seconds accepting pauses when the process is out of descriptors
BACKLOG = 4096


def bind_listener(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket with SO_REUSEPORT; InvalidError naming the address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InvalidError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as err:
        sock.close()
        hint = bind_hint(err, "another program (without SO_REUSEPORT) holds the port")
        raise InvalidError(
            f"cannot listen on {host}:{port}: {err.strerror}" + (f" ({hint})" if hint else "")
        ) from None
    sock.setblocking(False)
    return sock


def bind_hint(err: OSError, in_use: str) -> str:
    """Why a bind failed, in the operator's terms ("" when there is nothing to add);
    `in_use`: what EADDRINUSE means for this listener."""
    return {
        errno.EADDRINUSE: in_use,
        errno.EADDRNOTAVAIL: "the address is not assigned to this machine",
        errno.EACCES: "ports below 1024 need root; try --port-offset",
    }.get(err.errno or 0, "")


def _established(sock: socket.socket) -> bool:
    """True when a non-blocking connect already completed (usual on loopback and fast LANs):
    one getpeername() instead of a writable wait, a timer and two epoll changes."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


class Session:
    """One client from accept to close."""

    __slots__ = (
        "attempt",
        "backend",
        "client",
        "idle_since",
        "peer",
        "relay",
        "seen",
        "sock",
        "started",
        "timer",
    )

    def __init__(self, client: socket.socket, peer: tuple[str, int], retries: int) -> None:
        self.client = client
        self.peer = peer
        self.attempt = Attempt(retries)
        self.backend: Backend | None = None
        self.sock: socket.socket | None = None  # backend socket while connecting
        self.timer: asyncio.TimerHandle | None = None
        self.relay: Relay | None = None
        self.started = time.monotonic()
        self.seen = -1  # relay.activity at the last idle sweep
        self.idle_since = self.started


class Frontend:
    def __init__(
        self,
        config: FrontendConfig,
        pool: Pool,
        *,
        loop: asyncio.AbstractEventLoop,
        pipes: PipePool | None,
        access_log: AccessLog,
        adaptive: bool = True,
    ) -> None:
        self.config = config
        self.pool = pool
        self.loop = loop
        # The relay's sockets are watched through one epoll of the process (`poller`), not
        # one event-loop handle each: a connection's setup and teardown cost less.
        self.readiness = poller_for(loop)
        self.pipes = pipes
        self.access_log = access_log
        self.listener: socket.socket | None = None
        self.sessions: set[Session] = set()
        self.accepting = False
        self.stopping = False
        self.total = 0
        self.retries = 0
        self.failovers = 0
        self.failed = 0  # clients closed because no backend could be reached
        self.bytes_up = 0
        self.bytes_down = 0
        self.adaptive = adaptive
        self.on_idle: Callable[[], None] | None = None  # called when the last session ends
        self._addresses: dict[str, tuple[int, tuple[str, int]]] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def active(self) -> int:
        return len(self.sessions)

    # ---- listening -----------------------------------------------------------------------

    def start(self, listener: socket.socket | None = None) -> None:
        self.listener = listener or bind_listener(self.config.host, self.config.port)
        self._resume_accepting()

    def _resume_accepting(self) -> None:
        if not self.accepting and self.listener is not None and not self.stopping:
            self.accepting = True
            self.loop.add_reader(self.listener.fileno(), self._on_accept)

    def _pause_accepting(self) -> None:
        if self.accepting and self.listener is not None:
            self.accepting = False
            self.loop.remove_reader(self.listener.fileno())

    def _pause_accepting_briefly(self) -> None:
        """Out of descriptors: queued clients wait in the backlog until some are freed."""
        self._pause_accepting()
        self.loop.call_later(_DESCRIPTOR_PAUSE, self._resume_accepting)

    def stop_accepting(self) -> None:
        """Take the connections already queued, then close the listener."""
        if self.listener is None:
            return
        self.stopping = True
        self._pause_accepting()
        self._accept_queued(limit=None)
        self.listener.close()
        self.listener = None

    def _on_accept(self) -> None:
        self._accept_queued(limit=_ACCEPT_BURST)

    def _accept_queued(self, limit: int | None) -> None:
        listener = self.listener
        assert listener is not None
        count = 0
        while limit is None or count < limit:
            if not self.accepting and not self.stopping:
                return  # paused during this burst (out of descriptors): the rest wait
            if len(self.sessions) >= self.config.max_connections and not self.stopping:
                self._pause_accepting()  # back-pressure: clients wait in the backlog
                return
            try:
                client, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in _OUT_OF_DESCRIPTORS:
                    log.warning("%s: out of file descriptors; pausing accept", self.name)
                    self._pause_accepting_briefly()
                    return
                continue  # ECONNABORTED and friends: that client is gone, take the next
            count += 1
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.total += 1
            session = Session(client, peer[:2], self.config.retries)
            self.sessions.add(session)
            self._connect(session)

    # ---- connecting ------------------------------------------------------------------------

    def _address(self, backend: Backend) -> tuple[int, tuple[str, int]]:
        cached = self._addresses.get(backend.key)
        if cached is None:
            host, port = backend.config.host, backend.config.port
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            cached = (family, (str(address[0]), int(address[1])))
            self._addresses[backend.key] = cached
        return cached

    def _connect(self, session: Session) -> None:
        backend = self.pool.pick(session.attempt)
        if backend is None:
            reason = "no backend left to try" if session.attempt.tried else "no healthy backend"
            self._give_up(session, reason)
            return
        if len(session.attempt.tried) > 1:
            self.retries += 1
        session.backend = backend
        try:
            family, address = self._address(backend)
        except OSError as err:
            self._connect_failed(session, f"cannot resolve: {err}")
            return
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK)
        except OSError as err:
            # Out of descriptors: not the backend's fault. This client goes (its descriptor
            # with it); accepting pauses briefly, as when accept itself hits the limit.
            self._give_up(session, f"cannot open a socket to a backend: {err.strerror}")
            if err.errno in _OUT_OF_DESCRIPTORS:
                self._pause_accepting_briefly()
            return
        if not _NONBLOCK:
            sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session.sock = sock
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EAGAIN) and _established(sock):
            code = 0
        if code == 0:
            self._connected(session)
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            self.readiness.add_writer(sock.fileno(), partial(self._on_connect_ready, session))
            session.timer = self.loop.call_later(
                self.config.connect_timeout, self._on_connect_timeout, session
            )
        else:
            self._connect_failed(session, errno.errorcode.get(code, str(code)))

    def _on_connect_ready(self, session: Session) -> None:
        sock = session.sock
        assert sock is not None
        self.readiness.remove_writer(sock.fileno())
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._connect_failed(session, errno.errorcode.get(code, str(code)))
        else:
            self._connected(session)

    def _on_connect_timeout(self, session: Session) -> None:
        session.timer = None
        if session.sock is not None:
            self.readiness.remove_writer(session.sock.fileno())
        self._connect_failed(session, f"connect timeout {self.config.connect_timeout:g}s")

    def _connect_failed(self, session: Session, reason: str) -> None:
        backend = session.backend
        assert backend is not None
        if session.sock is not None:
            session.sock.close()
            session.sock = None
        log.info("%s: connect to %s failed: %s", self.name, backend.config.label, reason)
        self.pool.connect_failed(backend, reason)
        self._connect(session)

    def _connected(self, session: Session) -> None:
        sock, backend = session.sock, session.backend
        assert sock is not None and backend is not None
        session.sock = None
        if self.config.send_proxy:
            try:
                header = proxy_v2_header(session.peer, session.client.getsockname()[:2])
                sock.send(header)  # a fresh socket's send buffer always takes ~30 bytes
            except OSError as err:
                sock.close()
                self._finish(session, f"proxy-header-failed: {err.strerror}")
                return
        if session.attempt.failover:
            self.failovers += 1
        backend.active += 1
        backend.total += 1
        relay = Relay(
            self.readiness,
            session.client,
            sock,
            self.pipes,
            partial(self._relay_closed, session),
            adaptive=self.adaptive,
        )
        session.relay = relay
        relay.start()

    def _give_up(self, session: Session, reason: str) -> None:
        self.failed += 1
        log.warning("%s: client %s:%s closed: %s", self.name, *session.peer, reason)
        session.client.close()
        self._finish(session, "no-backend")

    # ---- the end ---------------------------------------------------------------------------

    def _relay_closed(self, session: Session, relay: Relay) -> None:
        backend = session.backend
        assert backend is not None
        backend.active -= 1
        backend.bytes_out += relay.bytes_up
        backend.bytes_in += relay.bytes_down
        self.bytes_up += relay.bytes_up
        self.bytes_down += relay.bytes_down
        self._finish(session, relay.outcome)

    def _finish(self, session: Session, outcome: str) -> None:
        self.sessions.discard(session)
        relay = session.relay
        self.access_log.connection(
            client=session.peer,
            frontend=self.name,
            backend=session.backend.key if session.backend else None,
            bytes_up=relay.bytes_up if relay else 0,
            bytes_down=relay.bytes_down if relay else 0,
            started=session.started,
            outcome=outcome,
            tries=len(session.attempt.tried),
        )
        if (
            not self.accepting
            and not self.stopping
            and len(self.sessions) < self.config.max_connections
        ):
            self._resume_accepting()
        if not self.sessions and self.on_idle is not None:
            self.on_idle()

    def reconfigure(self, config: FrontendConfig) -> None:
        """A reload: timeouts, limits, retries and PROXY apply from now on."""
        self.config = config

    def sweep_idle(self, now: float) -> int:
        """Close relays with no traffic for `idle_timeout`; called every few seconds."""
        limit = self.config.idle_timeout

        def idle(session: Session) -> bool:
            relay = session.relay
            assert relay is not None
            if relay.activity != session.seen:
                session.seen, session.idle_since = relay.activity, now
                return False
            return now - session.idle_since >= limit

        return self.close_sessions("idle-timeout", idle)

    def close_sessions(self, outcome: str, only: Callable[[Session], bool] | None = None) -> int:
        """Abort established sessions (drain or idle timeout, final shutdown); return count."""
        doomed = [s for s in self.sessions if s.relay is not None and (only is None or only(s))]
        for session in doomed:
            assert session.relay is not None
            session.relay.abort(outcome)
        return len(doomed)
