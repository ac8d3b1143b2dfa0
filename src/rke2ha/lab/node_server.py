"""The node emulator on real sockets: a thin aiohttp adapter around `node_app`.

One low-level aiohttp server per port role (no router: `NodeApp` does the routing), bound
to the node's own loopback address. TLS on 443 uses the hostname certificate, on 6443 and
9345 the node's own certificate (see `material`). aiohttp is used because it already
carries HTTP/1.1, TLS through `ssl` and server-side websockets for `/v3/subscribe`.

When the ingress config says `use-proxy-protocol`, 80 and 443 listen through
`proxy_listener` instead: a connection must start with a PROXY header, as nginx's
`listen ... proxy_protocol` requires, and the header's addresses reach `NodeApp`.

Which ports listen follows `node_states.EXPOSURE`: entering `joining` closes the ingress
listeners and their connections (websockets get close code 1001 "going away", like an
ingress pod that goes away); `ready` opens them again.

Control from outside, so `rke2ha lab join NODE` needs nothing but a signal:
SIGUSR1 -> join (joining), SIGUSR2 -> joined (ready), SIGTERM/SIGINT -> clean exit.
SIGSTOP/SIGCONT (freeze/thaw) need no code: the process simply stops answering.

The process writes one JSON line per event to stdout — `{"event": "listening", ...}` once
every port is bound, `{"event": "state", ...}` after each change — so whoever spawned it
can wait for the first line instead of polling ports. Send control signals only after
that line: before the event loop is up, SIGUSR1/SIGUSR2 still have their default action
(terminate). A signal that arrives while ports are being bound waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from aiohttp import WSCloseCode, WSMsgType, web

from rke2ha.errors import InvalidError
from rke2ha.lab.node_app import AcceptWebSocket, NodeApp, Request, Response, SubscribeStream
from rke2ha.lab.node_setup import NodeSetup
from rke2ha.lab.node_states import (
    REAL_PORTS,
    NodeEvent,
    NodeState,
    NodeStateMachine,
    PortRole,
)
from rke2ha.lab.proxy_listener import Address, ProxyProtocolSite

# Connections still open at exit get this long to finish (the lab must stop quickly).
SHUTDOWN_TIMEOUT = 1.0
_START_EVENTS = {NodeState.READY: NodeEvent.START, NodeState.JOINING: NodeEvent.START_JOINING}


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ serving `cert`; ALPN offers http/1.1 only (no HTTP/2 here)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _wants_websocket(request: web.BaseRequest) -> bool:
    upgrade = request.headers.get("Upgrade", "").lower()
    return upgrade == "websocket" and "upgrade" in request.headers.get("Connection", "").lower()


class NodeServer:
    """One node emulator: four listeners driven by a `NodeStateMachine`."""

    def __init__(self, setup: NodeSetup, out: TextIO | None = None) -> None:
        self.setup = setup
        self.app = NodeApp(setup.profile)
        self.machine = NodeStateMachine(setup.profile.name)
        self._out = out
        ingress_tls = server_tls_context(*setup.ingress_cert)
        node_tls = server_tls_context(*setup.node_cert)
        self._tls: dict[PortRole, ssl.SSLContext | None] = {
            PortRole.INGRESS_HTTP: None,
            PortRole.INGRESS_HTTPS: ingress_tls,
            PortRole.APISERVER: node_tls,
            PortRole.SUPERVISOR: node_tls,
        }
        self._runners: dict[PortRole, web.ServerRunner] = {}
        self._sites: dict[PortRole, web.TCPSite | ProxyProtocolSite] = {}
        # With use-proxy-protocol: what each connection's PROXY header named, by the
        # address the socket sees (the load balancer's end), for the ingress decisions.
        self._proxied: dict[Address, tuple[Address, Address] | None] = {}
        self._websockets: dict[PortRole, set[web.WebSocketResponse]] = {r: set() for r in PortRole}
        self._lock = asyncio.Lock()
        # Set once `start` has bound the ports: a control signal that arrives earlier
        # (right after spawn) waits for it instead of hitting a node that is still down.
        self.started = asyncio.Event()

    @property
    def state(self) -> NodeState:
        return self.machine.state

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, initial: NodeState = NodeState.READY) -> None:
        """Bind the ports `initial` exposes. Raises InvalidError when a port is taken."""
        event = _START_EVENTS.get(initial)
        if event is None:
            raise InvalidError(f"a node starts ready or joining, not {initial.value}")
        for role in PortRole:
            runner = web.ServerRunner(
                web.Server(self._handler(role), access_log=None),
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
            await runner.setup()
            self._runners[role] = runner
        async with self._lock:
            self.machine.handle(event)
            try:
                await self._apply_view()
            except BaseException:
                await self.close()
                raise
        self.emit(
            event="listening",
            address=self.setup.address,
            ports={str(port): self.setup.ports[role] for role, port in REAL_PORTS.items()},
            pid=os.getpid(),
        )
        self.started.set()

    async def handle_event(self, event: NodeEvent) -> NodeState:
        """Apply a control event (join/joined) and open or close listeners to match."""
        await self.started.wait()
        async with self._lock:
            before = self.machine.state
            after = self.machine.handle(event)
            if after is not before:
                await self._apply_view()
                self.emit(event="state")
            return after

    async def close(self) -> None:
        """Close websockets and listeners, give open requests `SHUTDOWN_TIMEOUT` to finish."""
        for role in PortRole:
            await self._close_websockets(role)
        for runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()
        self._sites.clear()

    async def _apply_view(self) -> None:
        view = self.machine.view
        for role, runner in self._runners.items():
            site = self._sites.get(role)
            if view.listens(role) and site is None:
                await self._listen(role, runner)
            elif not view.listens(role) and site is not None:
                await site.stop()
                del self._sites[role]
                await self._close_websockets(role)
                if runner.server is not None:
                    runner.server.pre_shutdown()  # drop keep-alive connections too

    async def _listen(self, role: PortRole, runner: web.ServerRunner) -> None:
        port = self.setup.ports[role]
        site: web.TCPSite | ProxyProtocolSite
        ingress = role in (PortRole.INGRESS_HTTP, PortRole.INGRESS_HTTPS)
        if ingress and self.setup.profile.ingress_settings.proxy_protocol and runner.server:
            site = ProxyProtocolSite(
                runner.server, self.setup.address, port, self._tls[role], self._remember
            )
        else:
            site = web.TCPSite(runner, self.setup.address, port, ssl_context=self._tls[role])
        try:
            await site.start()
        except OSError as err:
            raise InvalidError(
                f"node {self.setup.profile.name}: cannot listen on "
                f"{self.setup.address}:{port} ({role.value}): {err.strerror}; "
                "is another lab or process using it? (rke2ha down, or another port offset)"
            ) from None
        self._sites[role] = site

    def _remember(self, peer: Address, named: tuple[Address, Address] | None) -> None:
        if len(self._proxied) > 10_000:  # the lab's connections are few; stay bounded
            self._proxied.clear()
        self._proxied[peer] = named

    def _client(self, request: web.BaseRequest) -> tuple[str | None, int | None]:
        """(client address, PROXY destination port) of the request's connection."""
        transport = request.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        if not peername:
            return None, None
        named = self._proxied.get((peername[0], peername[1]))
        if named is None:
            return str(peername[0]), None
        return named[0][0], named[1][1]

    async def _close_websockets(self, role: PortRole) -> None:
        for ws in list(self._websockets[role]):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node is going away")

    def emit(self, **fields: object) -> None:
        """Write one JSON event line (node, state and `fields`) when an output was given."""
        if self._out is None:
            return
        line = {"node": self.setup.profile.name, "state": self.machine.state.value, **fields}
        self._out.write(json.dumps(line) + "\n")
        self._out.flush()

    # ---- requests ---------------------------------------------------------------------------

    def _handler(
        self, role: PortRole
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            return await self._serve(role, request)

        return handle

    async def _serve(self, role: PortRole, request: web.BaseRequest) -> web.StreamResponse:
        peer, destination_port = self._client(request)
        app_request = Request(
            method=request.method,
            target=request.raw_path,
            headers={name.lower(): value for name, value in request.headers.items()},
            wants_websocket=_wants_websocket(request),
            peer=peer,
            proxy_destination_port=destination_port,
        )
        reply = self.app.handle(role, app_request, self.machine.state)
        if isinstance(reply, Response):
            headers = {"Content-Type": reply.content_type, **dict(reply.headers)}
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        return await self._websocket(role, request, reply)

    async def _websocket(
        self, role: PortRole, request: web.BaseRequest, reply: AcceptWebSocket
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        for name, value in reply.headers:
            ws.headers[name] = value
        await ws.prepare(request)
        self._websockets[role].add(ws)
        sender = asyncio.create_task(self._stream_events(ws, reply.stream))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await ws.send_str(reply.stream.echo(message.data))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sender.cancel()
            self._websockets[role].discard(ws)
        return ws

    @staticmethod
    async def _stream_events(ws: web.WebSocketResponse, stream: SubscribeStream) -> None:
        try:
            while not ws.closed:
                await ws.send_str(stream.tick())
                await asyncio.sleep(stream.interval)
        except ConnectionError:
            pass  # the client went away; the receive loop ends the handler


async def serve_node(
    setup: NodeSetup, initial: NodeState = NodeState.READY, out: TextIO | None = None
) -> None:
    """Run one node emulator until SIGTERM or SIGINT; SIGUSR1/SIGUSR2 switch its state."""
    loop = asyncio.get_running_loop()
    server = NodeServer(setup, out)
    stop = asyncio.Event()
    pending: set[asyncio.Task[NodeState]] = set()

    def report(task: asyncio.Task[NodeState]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"rke2ha lab node: error: {task.exception()}", file=sys.stderr, flush=True)

    def control(event: NodeEvent) -> None:
        task = loop.create_task(server.handle_event(event))
        pending.add(task)
        task.add_done_callback(report)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, control, NodeEvent.JOIN)
    loop.add_signal_handler(signal.SIGUSR2, control, NodeEvent.JOINED)
    await server.start(initial)
    try:
        await stop.wait()
    finally:
        for task in list(pending):
            task.cancel()
        await server.close()
        server.emit(event="stopped")


def run_node(setup: NodeSetup, initial: NodeState = NodeState.READY) -> int:
    """Serve in the foreground (the process the lab orchestration spawns); exit code 0."""
    asyncio.run(serve_node(setup, initial, sys.stdout))
    return 0
