"""The asyncssh adapter against a real SSH server (asyncssh's, in this process, on
127.0.116.0/24): host keys unknown / accepted / changed, a key refused, sudo asking for a
password, a command over time, a server that never speaks, a closed port, a bastion."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from rke2ha.ssh import knownhosts
from rke2ha.ssh.connection import SshError, connect
from rke2ha.ssh.target import Endpoint, Target

ADDRESS = "127.0.116.1"


class _Server(asyncssh.SSHServer):
    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:  # fmt: skip
        return True  # lets the test use it as a bastion (direct-tcpip)


async def _process(process: asyncssh.SSHServerProcess[str]) -> None:
    command = process.command or ""
    if command.startswith("sudo -n"):
        process.stderr.write("sudo: a password is required\n")
        process.exit(1)
    elif command == "sleep":
        await asyncio.sleep(30)
        process.exit(0)
    else:
        process.stdout.write(f"ran: {command}\n")
        process.exit(0)


class Sshd:
    def __init__(self, host_key: asyncssh.SSHKey, client_key: asyncssh.SSHKey) -> None:
        self.host_key = host_key
        self.client_key = client_key
        self.server: Any = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncssh.create_server(
            _Server, ADDRESS, 0,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            process_factory=_process,
            sftp_factory=True,  # asyncssh's SFTP server on this machine's files
        )  # fmt: skip
        self.port = self.server.sockets[0].getsockname()[1]

    def known_line(self) -> str:
        kind, data = self.host_key.export_public_key().decode().split()[:2]
        return knownhosts.entry_line(knownhosts.host_name(ADDRESS, self.port), kind, data)


def _target(tmp_path: Path, port: int, user: str = "root", **kw: Any) -> Target:
    return Target(
        node="node-1",
        endpoint=Endpoint(ADDRESS, port, user),
        identity_file=kw.pop("identity_file", tmp_path / "id"),
        known_hosts=kw.pop("known_hosts", tmp_path / "known_hosts"),
        jump=kw.pop("jump", None),
        connect_timeout=kw.pop("connect_timeout", 5.0),
        command_timeout=kw.pop("command_timeout", 5.0),
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_unknown_key_refused_then_accepted_with_the_flag_then_known(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(tmp_path / "id"))
        server = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await server.start()
        target = _target(tmp_path, server.port)
        expected = server.host_key.get_fingerprint("sha256")
        with pytest.raises(SshError) as refused:
            await connect(target)
        assert refused.value.kind == "host_key_unknown"
        assert expected in refused.value.message
        assert "--accept-new-host-keys" in refused.value.fix
        assert not (tmp_path / "known_hosts").exists()
        conn = await connect(target, accept_new_host_keys=True)
        assert (await conn.run("id")).stdout == "ran: id\n"
        await conn.close()
        assert (tmp_path / "known_hosts").read_text() == server.known_line()
        assert (tmp_path / "known_hosts").stat().st_mode & 0o777 == 0o600
        conn = await connect(target)  # recorded: no flag needed any more
        await conn.close()
        server.server.close()

    run(scenario())


def test_changed_key_refused_even_with_the_flag_naming_the_line(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(tmp_path / "id"))
        server = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await server.start()
        old = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        old.port = server.port
        (tmp_path / "known_hosts").write_text("# mine\n" + old.known_line())
        with pytest.raises(SshError) as refused:
            await connect(_target(tmp_path, server.port), accept_new_host_keys=True)
        assert refused.value.kind == "host_key_changed"
        assert "CHANGED" in refused.value.message
        assert f"line 2 of {tmp_path / 'known_hosts'}" in refused.value.message
        assert "remove line 2" in refused.value.fix
        assert (tmp_path / "known_hosts").read_text() == "# mine\n" + old.known_line()
        server.server.close()

    run(scenario())


def test_sudo_prompt_is_reported_and_command_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(tmp_path / "id"))
        server = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await server.start()
        (tmp_path / "known_hosts").write_text(server.known_line())
        conn = await connect(_target(tmp_path, server.port, user="nosudo", command_timeout=0.5))
        with pytest.raises(SshError) as refused:
            await conn.run("cat /etc/shadow")
        assert refused.value.kind == "sudo"
        assert "nosudo" in refused.value.message and "NOPASSWD" in refused.value.fix
        assert (await conn.run("whoami", root=False)).stdout == "ran: whoami\n"
        started = time.monotonic()
        slow = await conn.run("sleep", root=False)
        assert slow.timed_out and slow.exit_status is None
        assert time.monotonic() - started < 3
        await conn.close()
        server.server.close()

    run(scenario())


def test_key_not_authorized_and_missing_identity(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        server = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await server.start()
        (tmp_path / "known_hosts").write_text(server.known_line())
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(tmp_path / "id"))
        with pytest.raises(SshError) as refused:
            await connect(_target(tmp_path, server.port))
        assert refused.value.kind == "auth"
        with pytest.raises(SshError) as missing:
            await connect(_target(tmp_path, server.port, identity_file=tmp_path / "nope"))
        assert missing.value.kind == "identity" and "ssh.identity_file" in missing.value.message
        server.server.close()

    run(scenario())


def test_silent_server_times_out_and_closed_port_is_unreachable(tmp_path: Path) -> None:
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(tmp_path / "id"))
    with socket.socket() as silent:  # accepts (backlog) and never says a word
        silent.bind((ADDRESS, 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(SshError) as slow:
            run(connect(_target(tmp_path, silent.getsockname()[1], connect_timeout=1.0)))
        assert slow.value.kind == "timeout"
        assert time.monotonic() - started < 4
        closed = silent.getsockname()[1]
    with pytest.raises(SshError) as refused:
        run(connect(_target(tmp_path, closed)))
    assert refused.value.kind == "unreachable"
    # The reason in words, not asyncio's "Connect call failed ('127.0.x.y', PORT)".
    assert "connection refused (the machine answered, but nothing listens" in str(refused.value)
    assert "Connect call failed" not in str(refused.value)


def test_through_a_bastion_both_host_keys_checked(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(tmp_path / "id"))
        bastion = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        node = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await bastion.start()
        await node.start()
        jump = Endpoint(ADDRESS, bastion.port, "ops")
        (tmp_path / "known_hosts").write_text(node.known_line())
        with pytest.raises(SshError) as refused:  # the bastion's key is unknown
            await connect(_target(tmp_path, node.port, jump=jump))
        assert refused.value.kind == "host_key_unknown"
        assert f"[{ADDRESS}]:{bastion.port}" in refused.value.message
        (tmp_path / "known_hosts").write_text(node.known_line() + bastion.known_line())
        conn = await connect(_target(tmp_path, node.port, jump=jump))
        assert (await conn.run("hostname")).stdout == "ran: hostname\n"
        await conn.close()
        bastion.server.close()
        node.server.close()

    run(scenario())


def test_a_login_dropped_during_the_handshake_is_tried_again(tmp_path: Path) -> None:
    """sshd throttling (MaxStartups) closes a new connection at once; the next try works."""

    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(tmp_path / "id"))
        server = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await server.start()
        real_port = server.port
        seen = 0

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()

        async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal seen
            seen += 1
            if seen == 1:  # the first one is dropped before the banner
                writer.close()
                return
            back_reader, back_writer = await asyncio.open_connection(ADDRESS, real_port)
            await asyncio.gather(pipe(reader, back_writer), pipe(back_reader, writer))

        proxy = await asyncio.start_server(front, ADDRESS, 0)
        port = proxy.sockets[0].getsockname()[1]
        server.port = port  # known_hosts names the port the client dials
        (tmp_path / "known_hosts").write_text(server.known_line())
        conn = await connect(_target(tmp_path, port))
        assert (await conn.run("true")).ok
        await conn.close()
        assert seen == 2
        proxy.close()
        # One that drops every login: three tries, then one clear error.
        drops = 0

        async def dropper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal drops
            drops += 1
            writer.close()

        always = await asyncio.start_server(dropper, ADDRESS, 0)
        with pytest.raises(SshError) as lost:
            await connect(_target(tmp_path, always.sockets[0].getsockname()[1]))
        assert lost.value.kind == "lost" and "during the handshake" in lost.value.message
        assert drops == 3
        always.close()
        server.server.close()

    run(scenario())


def test_put_copies_a_file_over_sftp_and_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(tmp_path / "id"))
        server = Sshd(asyncssh.generate_private_key("ssh-ed25519"), client)
        await server.start()
        (tmp_path / "known_hosts").write_text(server.known_line())
        conn = await connect(_target(tmp_path, server.port))
        source = tmp_path / "rke2.linux-amd64.tar.gz"
        source.write_bytes(bytes(range(256)) * 1000)
        (tmp_path / "there").mkdir()
        await conn.put(source, str(tmp_path / "there" / source.name), 10.0)
        assert (tmp_path / "there" / source.name).read_bytes() == source.read_bytes()
        with pytest.raises(SshError) as failed:
            await conn.put(source, str(tmp_path / "nowhere" / source.name), 10.0)
        assert "uploading rke2.linux-amd64.tar.gz" in failed.value.message
        await conn.close()
        server.server.close()

    run(scenario())
