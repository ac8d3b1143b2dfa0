"""`up`'s look at the lab's ports before it starts anything: what counts as taken.

A trial bind was wrong both ways (see providers/lab/ports.py); these use real sockets on
127.0.176.1, this file's own address, and read the kernel's tables as `up` does.
"""

from __future__ import annotations

import socket
from pathlib import Path

from rke2ha.providers.lab.ports import in_use, listening

HOST = "127.0.176.1"


def _listener(reuse_port: bool) -> socket.socket:
    sock = socket.socket()
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, 0))
    sock.listen()
    return sock


def test_a_reuseport_listener_is_taken_and_its_time_wait_leftovers_are_not() -> None:
    listener = _listener(reuse_port=True)  # as the lab's load balancer binds
    port = listener.getsockname()[1]
    assert in_use("tcp", HOST, port, listening())
    client = socket.create_connection((HOST, port))
    served, _ = listener.accept()
    served.close()  # the server closes first: its side goes to TIME_WAIT
    client.close()
    listener.close()
    assert not in_use("tcp", HOST, port, listening())


def test_a_bound_udp_socket_is_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        assert in_use("udp", HOST, port, listening())
        assert not in_use("tcp", HOST, port, listening())


def test_wildcard_listeners_take_every_address(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st\n"
    (tmp_path / "tcp").write_text(header + "   0: 00000000:0050 00000000:0000 0A\n")
    (tmp_path / "tcp6").write_text(
        header + "   0: 00000000000000000000000000000000:01BB 0000:0000 0A\n"
        "   1: 0000000000000000FFFF00000100007F:1F90 0000:0000 0A\n"
    )
    taken = listening(tmp_path)
    assert in_use("tcp", "127.0.10.10", 80, taken)  # 0.0.0.0:80
    assert in_use("tcp", "127.0.10.10", 443, taken)  # [::]:443
    assert not in_use("tcp", "127.0.10.10", 8080, taken)  # one v6 address only
