"""The asyncssh adapter: log in to one machine (through a bastion when asked), verify its
host key against known_hosts (`knownhosts` decides), run commands as root with a timeout.

Every failure is an `SshError` with a kind, a one-line message and a fix, so a caller can
report a machine that does not answer as one finding and go on with the others.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from rke2ha.errors import Rke2haError
from rke2ha.ssh import knownhosts
from rke2ha.ssh.sudo import as_root, wanted_password
from rke2ha.ssh.target import Endpoint, Target

RETRIES = 2  # more logins after one dropped during the handshake


class SshError(Rke2haError):
    """Could not reach a machine or run a command there (`kind` says which step failed)."""

    def __init__(self, kind: str, message: str, fix: str) -> None:
        super().__init__(f"{message}; fix: {fix}")
        # host_key_unknown | host_key_changed | unreachable | lost | timeout | auth | identity
        # | sudo | ssh
        self.kind = kind
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class Result:
    exit_status: int | None  # None: killed by a signal or timed out
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def tail(self, lines: int = 12) -> str:
        """The last `lines` of what the command printed, stderr last (where systemctl, apt
        and install scripts put the cause), for an error message."""
        if self.timed_out:
            return "(no answer before the time limit)"
        text = (self.stdout + "\n" + self.stderr).strip()
        return "\n".join(text.splitlines()[-lines:]) or f"exit status {self.exit_status}"


class HostKeys:
    """One known_hosts file as asyncssh asks about it: which keys to trust for a host, and
    what to do with a key that is not among them (refuse, or record when accepting new)."""

    def __init__(self, path: Path, accept_new: bool) -> None:
        self.path = path
        self.accept_new = accept_new
        self.refusal: SshError | None = None

    def _entries(self) -> list[knownhosts.Entry]:
        # Read at every connection: another connection may just have appended to it.
        try:
            return knownhosts.parse(self.path.read_text())
        except FileNotFoundError:
            return []

    def trusted(self, name: str) -> list[asyncssh.SSHKey]:
        keys = []
        for entry in knownhosts.entries_for(self._entries(), name):
            try:
                keys.append(asyncssh.import_public_key(f"{entry.key_type} {entry.key_data}"))
            except (asyncssh.KeyImportError, ValueError):
                continue  # a key type asyncssh cannot read is no key it can match
        return keys

    def judge(self, name: str, key: asyncssh.SSHKey) -> bool:
        """A key the trusted list did not hold: accept (recording it) or refuse."""
        key_type = key.get_algorithm()
        key_data = base64.b64encode(key.public_data).decode()
        judgement = knownhosts.judge(self._entries(), name, key_type, key_data)
        printed = knownhosts.fingerprint(key_data)
        if judgement.verdict == "known":
            return True
        if judgement.verdict in ("changed", "revoked"):
            lines = ", ".join(str(n) for n in judgement.lines)
            what = "is revoked in" if judgement.verdict == "revoked" else "CHANGED: it differs from"
            self.refusal = SshError(
                "host_key_changed",
                f"host key of {name} ({key_type} {printed}) {what} line {lines} of {self.path}; "
                "the machine was reinstalled or someone is in the middle, so rke2ha refuses it "
                "(also with --accept-new-host-keys)",
                f"if the machine really was reinstalled, check the new key's fingerprint on its "
                f"console (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then remove line {lines} "
                f"of {self.path} (ssh-keygen -R '{name}' -f {self.path}) and run again with "
                "--accept-new-host-keys",
            )
            return False
        if self.accept_new:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write(knownhosts.entry_line(name, key_type, key_data))
            return True
        also = (
            f" (keys of type {', '.join(judgement.other_types)} are known for it)"
            if judgement.other_types
            else ""
        )
        self.refusal = SshError(
            "host_key_unknown",
            f"host key of {name} is unknown: {key_type} {printed} is not in {self.path}{also}",
            "check that fingerprint on the machine's console (ssh-keygen -lf "
            "/etc/ssh/ssh_host_*_key.pub) and run again with --accept-new-host-keys to record "
            f"it in {self.path}",
        )
        return False


class _Client(asyncssh.SSHClient):
    def __init__(self, keys: HostKeys, name: str) -> None:
        self._keys = keys
        self._name = name

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        return self._keys.judge(self._name, key)


def _mapped(err: BaseException, endpoint: Endpoint, keys: HostKeys, timeout: float) -> SshError:
    where = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
    if keys.refusal is not None:
        return keys.refusal
    if isinstance(err, TimeoutError):
        return SshError(
            "timeout",
            f"{where}: no SSH login within {timeout:g}s (machine down, frozen or filtered)",
            "check that the machine runs and sshd answers on that port "
            "(ssh.connect_timeout sets the limit)",
        )
    if isinstance(err, asyncssh.PermissionDenied):
        return SshError(
            "auth",
            f"{where}: the server refused every key offered ({err.reason})",
            f"add the public key of ssh.identity_file (or the agent's) to "
            f"~{endpoint.user}/.ssh/authorized_keys there",
        )
    if isinstance(err, asyncssh.ConnectionLost | ConnectionResetError):
        return SshError(
            "lost",
            f"{where}: sshd closed the connection during the handshake ({err})",
            "look at sshd's log on the machine (MaxStartups throttling, TCP wrappers, sshd "
            "restarting) and try again",
        )
    if isinstance(err, OSError):
        # asyncio's connect says "Connect call failed ('10.0.0.1', 22)"; the errno says why.
        reason = os.strerror(err.errno).lower() if err.errno else (err.strerror or str(err))
        if err.errno == errno.ECONNREFUSED:
            reason += " (the machine answered, but nothing listens on that port)"
        return SshError(
            "unreachable",
            f"{where}: {reason}",
            "check the address and port in the spec, that the machine runs and that sshd "
            "listens there",
        )
    return SshError("ssh", f"{where}: {err}", "check sshd on the machine and the ssh: block")


async def _login(
    endpoint: Endpoint,
    keys: HostKeys,
    identity: Path | None,
    timeout: float,
    tunnel: asyncssh.SSHClientConnection | None = None,
) -> asyncssh.SSHClientConnection:
    name = knownhosts.host_name(endpoint.host, endpoint.port)
    options: dict[str, Any] = {}
    if identity is not None:
        options.update(client_keys=[str(identity)], agent_path=None)
    if tunnel is not None:
        options["tunnel"] = tunnel
    # A connection dropped during the handshake (sshd's MaxStartups throttling, an sshd
    # restarting) is tried again, twice at most and within the same `timeout`.
    deadline = time.monotonic() + timeout
    for attempt in range(RETRIES + 1):
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                return await asyncssh.connect(
                    endpoint.host,
                    endpoint.port,
                    username=endpoint.user,
                    known_hosts=lambda _h, _a, _p: (keys.trusted(name), [], []),
                    client_factory=lambda: _Client(keys, name),
                    config=None,
                    connect_timeout=timeout,
                    login_timeout=timeout,
                    **options,
                )
        except (asyncssh.ConnectionLost, ConnectionResetError) as err:
            pause = 0.3 * (attempt + 1)
            if keys.refusal is None and attempt < RETRIES and deadline - time.monotonic() > pause:
                await asyncio.sleep(pause)
                continue
            raise _mapped(err, endpoint, keys, timeout) from None
        except (OSError, asyncssh.Error, TimeoutError) as err:
            raise _mapped(err, endpoint, keys, timeout) from None
    raise AssertionError("unreachable")  # the loop returns or raises


class Connection:
    """A logged-in SSH connection to one node."""

    def __init__(
        self,
        target: Target,
        conn: asyncssh.SSHClientConnection,
        jump: asyncssh.SSHClientConnection | None,
    ) -> None:
        self.target = target
        self._conn = conn
        self._jump = jump

    async def run(
        self,
        command: str,
        *,
        root: bool = True,
        timeout: float | None = None,
        input: str | None = None,
    ) -> Result:
        """`command` through the login shell (as root unless `root=False`); a command still
        running after `timeout` (default ssh.command_timeout) is a Result with timed_out."""
        full = as_root(command, self.target.privileged) if root else command
        limit = timeout if timeout is not None else self.target.command_timeout
        try:
            async with asyncio.timeout(limit):
                done = await self._conn.run(full, input=input, check=False)
        except TimeoutError:
            return Result(None, "", "", timed_out=True)
        except (OSError, asyncssh.Error) as err:
            raise _mapped(err, self.target.endpoint, HostKeys(Path(), False), limit) from None
        stdout, stderr = str(done.stdout or ""), str(done.stderr or "")
        if root and not self.target.privileged and wanted_password(done.exit_status, stderr):
            raise SshError(
                "sudo",
                f"user {self.target.endpoint.user} may not run commands as root without a "
                f"password (sudo -n: {stderr.strip().splitlines()[-1]})",
                f"give {self.target.endpoint.user} passwordless sudo (a sudoers line "
                f"'{self.target.endpoint.user} ALL=(ALL) NOPASSWD: ALL' in /etc/sudoers.d/) or "
                "log in as root (ssh.user)",
            )
        return Result(done.exit_status, stdout, stderr)

    async def put(self, local: Path, remote: str, timeout: float) -> None:
        """Copy `local` to `remote` over SFTP, as the login user (a folder that user owns)."""
        try:
            async with asyncio.timeout(timeout):
                async with self._conn.start_sftp_client() as sftp:
                    await sftp.put(str(local), remote)
        except TimeoutError:
            raise SshError(
                "timeout",
                f"{self.target.node}: uploading {local.name} took over {timeout:g}s",
                "check the network to the machine and its free disk space",
            ) from None
        except (OSError, asyncssh.Error) as err:
            raise SshError(
                "ssh",
                f"{self.target.node}: uploading {local.name} to {remote} failed ({err})",
                "check that sshd offers the sftp subsystem and the disk there has room",
            ) from None

    async def start(self, command: str) -> Background:
        """`command` as the login user, left running (see `Background`)."""
        try:
            process = await self._conn.create_process(command)
        except (OSError, asyncssh.Error) as err:
            raise _mapped(err, self.target.endpoint, HostKeys(Path(), False), 0) from None
        return Background(process)

    async def close(self) -> None:
        self._conn.close()
        await self._conn.wait_closed()
        if self._jump is not None:
            self._jump.close()
            await self._jump.wait_closed()


async def connect(target: Target, accept_new_host_keys: bool = False) -> Connection:
    """Log in to `target` (through its bastion first when it has one)."""
    if target.identity_file is not None and not target.identity_file.is_file():
        raise SshError(
            "identity",
            f"ssh.identity_file {target.identity_file} does not exist",
            "point ssh.identity_file at your private key, or leave it out to use the SSH agent",
        )
    keys = HostKeys(target.known_hosts, accept_new_host_keys)
    jump = None
    if target.jump is not None:
        jump = await _login(target.jump, keys, target.identity_file, target.connect_timeout)
    try:
        conn = await _login(
            target.endpoint, keys, target.identity_file, target.connect_timeout, tunnel=jump
        )
    except BaseException:
        if jump is not None:
            jump.close()
        raise
    return Connection(target, conn, jump)


@contextlib.asynccontextmanager
async def connected(
    target: Target, accept_new_host_keys: bool = False
) -> AsyncIterator[Connection]:
    """`connect`, closed again when the block ends (also when it raises)."""
    conn = await connect(target, accept_new_host_keys)
    try:
        yield conn
    finally:
        await conn.close()


class Background:
    """A command left running on a machine (a probe listener): its first line of output,
    then stopped by closing its stdin, killed if it does not end in time."""

    def __init__(self, process: asyncssh.SSHClientProcess[str]) -> None:
        self._process = process

    async def first_line(self, timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):
                return str(await self._process.stdout.readline())
        except TimeoutError:
            return ""

    async def stop(self, timeout: float = 5.0) -> bool:
        """Close its stdin and wait for it to end; True when it ended by itself."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._process.stdin.write_eof()
        try:
            async with asyncio.timeout(timeout):
                await self._process.wait_closed()
            return True
        except TimeoutError:
            with contextlib.suppress(OSError, asyncssh.Error):
                self._process.kill()
            self._process.close()
            return False
