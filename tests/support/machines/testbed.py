"""A test session's machines: network, keys, machines, workstation, spec, and clean-up.

    with Testbed() as bed:
        node1, node2, node3 = bed.boot(["node-1", "node-2", "node-3"])
        bed.workstation.ssh(node1, "id -un", user="rke2ha")
        bed.write_spec(tmp / "spec.yaml")

Nothing outlives `close()` (also run on exceptions, atexit and, under the pytest fixture,
SIGTERM): machines stopped, namespaces deleted, the session directory removed."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml
from tests.support.machines import rootfs as rootfs_mod
from tests.support.machines.machine import Machine, MachineError
from tests.support.machines.network import WORKSTATION_ADDRESS, TestNetwork, machine_address
from tests.support.machines.sshkeys import keygen, known_hosts_lines
from tests.support.machines.sweep import (
    LOCK_DIR,
    SESSIONS_DIR,
    Leftovers,
    find_leftovers,
    new_prefix,
    remove,
    sweep,
)

# Figures printed in pytest's terminal summary (see tests/conftest.py).
TIMINGS: list[str] = []


class Workstation:
    """The namespace rke2ha under test runs in: on the bridge with the machines, nothing else."""

    def __init__(self, netns: str, address: str, client_key: Path, known_hosts: Path) -> None:
        self.netns = netns
        self.address = address
        self.client_key = client_key
        self.known_hosts = known_hosts

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """`argv` in the workstation namespace (output captured as text unless overridden)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.argv(argv), timeout=timeout, check=False, **kwargs)

    def rke2ha(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """`rke2ha ARGS...` (this checkout's, with the running interpreter) on the workstation."""
        return self.run([sys.executable, "-m", "rke2ha", *args], timeout=timeout)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(argv), **kwargs)

    def ssh_argv(
        self,
        machine: Machine,
        command: str,
        *,
        user: str = "root",
        known_hosts: Path | None = None,
        connect_timeout: int = 5,
    ) -> list[str]:
        """OpenSSH with the session's key and strict host key checking against known_hosts."""
        return [
            "ssh", "-F", "none", "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "LogLevel=ERROR",
            f"{user}@{machine.address}", command,
        ]  # fmt: skip

    def ssh(
        self, machine: Machine, command: str, *, user: str = "root", timeout: float = 30.0,
        known_hosts: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.run(self.ssh_argv(machine, command, user=user, known_hosts=known_hosts),
                        timeout=timeout)  # fmt: skip


class Testbed:
    """Machines booted from the cached root filesystem on one private bridge."""

    __test__ = False

    def __init__(self) -> None:
        self.prefix = new_prefix()
        self.directory = SESSIONS_DIR / self.prefix
        self.machines: dict[str, Machine] = {}
        self._booted = 0  # machines ever booted: the next one's address index
        self.network = TestNetwork(self.prefix)
        self._lock: IO[str] | None = None
        self._closed = False
        self._mutex = threading.Lock()
        self.rootfs: rootfs_mod.Rootfs | None = None
        self.swept: list[str] = []
        self.workstation: Workstation
        self.client_key: Path
        self.known_hosts: Path

    # -- setup ----------------------------------------------------------------------------

    def open(self) -> Testbed:
        """Sweep crashed sessions, get the root filesystem, make the network and keys."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self._lock = (LOCK_DIR / f"{self.prefix}.lock").open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # held for the whole session: see sweep.py
        atexit.register(self.close)
        self.swept = sweep()
        self.rootfs = rootfs_mod.ensure_rootfs()
        TIMINGS.append(
            f"{self.prefix}: root filesystem {'built' if self.rootfs.built else 'cached'} in "
            f"{self.rootfs.seconds:.1f}s ({self.rootfs.path})"
        )
        self.directory.mkdir(parents=True, mode=0o700)
        self.client_key = keygen(self.directory / "keys" / "id_ed25519", "ed25519", "rke2ha-test")
        self.known_hosts = self.directory / "known_hosts"
        self.known_hosts.write_text("")
        self.network.create()
        ws_ns, _ = self.network.attach("ws", WORKSTATION_ADDRESS)
        self.workstation = Workstation(
            ws_ns, WORKSTATION_ADDRESS, self.client_key, self.known_hosts
        )
        return self

    def __enter__(self) -> Testbed:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _user_ids(self) -> dict[str, tuple[int, int]]:
        assert self.rootfs is not None
        ids = {}
        for line in (self.rootfs.path / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            ids[fields[0]] = (int(fields[2]), int(fields[3]))
        return ids

    def boot(
        self,
        names: Iterable[str],
        hostnames: dict[str, str] | None = None,
        timeout: float = 120.0,
        bind_ro: tuple[str, ...] = (),
    ) -> list[Machine]:
        """New machines named `names` (hostname = name unless given), booted in parallel;
        returns them once every one runs sshd. Their host keys join `known_hosts`."""
        assert self.rootfs is not None, "open() first"
        started = time.monotonic()
        new = []
        for name in names:
            if name in self.machines:
                raise MachineError(f"a machine named {name} exists already")
            address = machine_address(self._booted)
            self._booted += 1
            netns, port = self.network.attach(name, address)
            machine = Machine(
                name=name,
                hostname=(hostnames or {}).get(name, name),
                address=address,
                netns=netns,
                cable=functools.partial(self.network.set_port, port),
                machine_name=f"{self.prefix}-{name}",
                rootfs=self.rootfs.path,
                directory=self.directory / "machines" / name,
                authorized_key=self.client_key.with_suffix(".pub").read_text(),
                user_ids=self._user_ids(),
                bind_ro=bind_ro,
            )
            self.machines[name] = machine
            machine.prepare()
            new.append(machine)
        self.write_known_hosts(self.known_hosts)
        # Popen from this (the main) thread; only the waiting runs in worker threads.
        for machine in new:
            machine.launch()
        cancel = threading.Event()  # on Ctrl-C/SIGTERM here, the waiting threads stop too
        pool = ThreadPoolExecutor(max_workers=len(new) or 1)
        try:
            list(pool.map(lambda m: m.wait_booted(timeout, cancel), new))
        except BaseException:
            cancel.set()
            raise
        finally:
            pool.shutdown(wait=True)
        TIMINGS.append(
            f"{self.prefix}: {len(new)} machine(s) booted in {time.monotonic() - started:.1f}s "
            f"({', '.join(f'{m.name} {m.boot_seconds:.1f}s {m.boot_state}' for m in new)})"
        )
        TIMINGS.extend(f"{self.prefix}: {note}" for m in new for note in m.boot_notes)
        return new

    def machine(self, name: str) -> Machine:
        return self.machines[name]

    def discard(self, machine: Machine) -> None:
        """Stop `machine` for good and take it off the network and out of `machines` (a
        test's own machine, so the next test sees only the shared ones)."""
        machine.kill()
        self.network.detach(machine.netns)
        del self.machines[machine.name]
        shutil.rmtree(machine.directory, ignore_errors=True)
        self.write_known_hosts(self.known_hosts)

    @contextlib.contextmanager
    def extra_machine(
        self, name: str, hostname: str | None = None, bind_ro: tuple[str, ...] = ()
    ) -> Iterator[Machine]:
        """A machine of the test's own, booted for the `with` block and discarded after;
        `bind_ro`: host directories it sees read-only at the same paths."""
        (machine,) = self.boot([name], {name: hostname} if hostname else None, bind_ro=bind_ro)
        try:
            yield machine
        finally:
            self.discard(machine)

    def renew_host_keys(self, machine: Machine) -> None:
        """New host keys on `machine` (a reinstalled host) and in the session's known_hosts;
        a copy of known_hosts taken before still holds the old ones."""
        machine.regenerate_host_keys()
        self.write_known_hosts(self.known_hosts)

    # -- what tests hand to the code under test --------------------------------------------

    def write_known_hosts(self, path: Path, machines: Iterable[Machine] | None = None) -> Path:
        """known_hosts naming the current host keys of `machines` (default: all), by address."""
        lines = []
        for machine in machines if machines is not None else self.machines.values():
            lines += known_hosts_lines(machine.address, machine.host_keys)
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def spec(
        self,
        machines: Sequence[Machine] | None = None,
        *,
        user: str = "rke2ha",
        known_hosts: Path | None = None,
        ssh: bool = True,
        name: str = "rancher",
        hostname: str = "rancher.rke2ha.test",
    ) -> dict[str, Any]:
        """An rke2ha spec (`provider: existing`) whose nodes are `machines` (default: every
        machine), reached over SSH as `user` with the session's key; the load balancer runs on
        the workstation. `ssh=False` leaves the ssh blocks out."""
        chosen = list(machines) if machines is not None else list(self.machines.values())
        nodes: list[dict[str, Any]] = []
        for machine in chosen:
            node: dict[str, Any] = {"name": machine.name, "address": machine.address}
            if ssh:
                node["ssh"] = {"host": machine.address}
            nodes.append(node)
        doc: dict[str, Any] = {
            "name": name,
            "hostname": hostname,
            "provider": "existing",
            "nodes": nodes,
            "load_balancer": {"layer": 4, "engine": "builtin", "address": self.workstation.address},
            "dns": {"provider": "manual", "zone": hostname.split(".", 1)[1]},
        }
        if ssh:
            doc["ssh"] = {
                "user": user,
                "port": 22,
                "identity_file": str(self.client_key),
                "known_hosts": str(known_hosts or self.known_hosts),
            }
        return doc

    def write_spec(self, path: Path, machines: Sequence[Machine] | None = None, **kw: Any) -> Path:
        """`spec(...)` written as YAML to `path`; returns `path`."""
        path.write_text(yaml.safe_dump(self.spec(machines, **kw), sort_keys=False))
        return path

    # -- teardown ---------------------------------------------------------------------------

    def leftovers(self) -> Leftovers:
        return find_leftovers(self.prefix)

    def close(self) -> None:
        """Stop every machine (cleanly, killed after 15s), delete the network and the
        session directory, release the session lock. Safe to call more than once."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        try:
            running = [m for m in self.machines.values() if m.running]
            for machine in running:
                machine.thaw()
                assert machine._nspawn is not None
                machine._nspawn.terminate()
            for machine in running:
                machine.stop(timeout=15)
            self.network.destroy()
            remove(self.prefix)  # anything the steps above missed (e.g. a crash mid-boot)
            shutil.rmtree(self.directory, ignore_errors=True)
        finally:
            if self._lock is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(LOCK_DIR / f"{self.prefix}.lock")
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._lock.close()
                self._lock = None
            atexit.unregister(self.close)


@contextlib.contextmanager
def session(names: Iterable[str], hostnames: dict[str, str] | None = None) -> Iterator[Testbed]:
    """A Testbed opened with machines `names` booted, closed on the way out. While it lasts
    SIGTERM raises KeyboardInterrupt (in the main thread), so a terminated test run unwinds
    through `close` instead of leaving machines behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    bed = Testbed()
    try:
        bed.open()
        bed.boot(names, hostnames)
        yield bed
    finally:
        bed.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
