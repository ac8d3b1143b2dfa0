"""Stand-ins for three RKE2 server nodes, as far as a load balancer in front sees them.

Each node listens on its own loopback address (127.0.22.11-13) on the real ports, which
needs root: 80 (ingress, like ingress-nginx once Rancher's TLS Ingress exists: `/healthz`
-> 200 from the catch-all server for any other Host, 308 to https for the Rancher Host; an
`/echo` that returns the request headers, a websocket `/ws`), 443 (TLS: says which node
answered), 6443 (kube-apiserver `/readyz`: 401 without a valid bearer token unless
anonymous health is on, 200 when ready, 500 when not) and 9345 (supervisor `/ping`:
`pong`). A node that has not joined yet has 9345 but no 6443, like the real thing.

Every response carries `X-Node: <name>` so a test sees where the load balancer sent it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@dataclass
class NodeState:
    name: str
    address: str
    hostname: str
    token: str | None = None  # bearer token the apiserver accepts
    anonymous_health: bool = False
    ready: bool = True  # /readyz 200 (with credentials) or 500
    joined: bool = True  # False: 6443 is closed
    pong: str = "pong"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: NodeState
    role: str

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Health checkers hang up as soon as they have the status line; that is not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("X-Node", self.server.state.name)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_GET(self) -> None:
        state, role = self.server.state, self.server.role
        path = self.path.split("?")[0]
        if role == "ingress":
            self._ingress(state, path)
        elif role == "apiserver" and path == "/readyz":
            self._readyz(state)
        elif role == "supervisor" and path == "/ping":
            self._reply(200, state.pong)
        elif role == "ingress-tls":
            self._reply(200, state.name)
        else:
            self._reply(404, "not found")

    def _ingress(self, state: NodeState, path: str) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        if path == "/healthz" and host == state.hostname:
            self.send_response(308)
            self.send_header("Location", f"https://{host}{path}")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
        elif path == "/healthz":
            self._reply(200, "ok")
        elif path == "/echo":
            headers = {key.lower(): value for key, value in self.headers.items()}
            self._reply(200, json.dumps(headers), "application/json")
        elif path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket(state)
        else:
            self._reply(404, "not found")

    def _readyz(self, state: NodeState) -> None:
        auth = self.headers.get("Authorization")
        anonymous_denied = auth is None and not state.anonymous_health
        if anonymous_denied or (auth is not None and auth != f"Bearer {state.token}"):
            self._reply(401, '{"kind":"Status","code":401}', "application/json")
        else:
            self._reply(200 if state.ready else 500, "ok" if state.ready else "not ready")

    def _websocket(self, state: NodeState) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        payload = state.name.encode()
        self.wfile.write(bytes([0x81, len(payload)]) + payload)  # one unmasked text frame
        self.wfile.flush()
        self.close_connection = True


@dataclass
class LiveNodes:
    """Three node stand-ins; `stop()` closes every listener."""

    states: list[NodeState]
    cert: Path
    key: Path
    servers: list[_Server] = field(default_factory=list)

    def start(self) -> None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.cert, self.key)
        for state in self.states:
            listeners = [(80, "ingress", False), (443, "ingress-tls", True)]
            if state.joined:
                listeners.append((6443, "apiserver", True))
            listeners.append((9345, "supervisor", True))
            for port, role, secure in listeners:
                server = _Server((state.address, port), _Handler)
                server.state, server.role = state, role
                if secure:
                    # handshake in the handler thread, not in accept(): one slow client
                    # must not stall the listener
                    server.socket = tls.wrap_socket(
                        server.socket, server_side=True, do_handshake_on_connect=False
                    )
                self.servers.append(server)
                threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers.clear()
