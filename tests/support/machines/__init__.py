"""Test machines: real Debian machines (systemd as PID 1, sshd, sudo) booted with
systemd-nspawn in network namespaces of the test's own, reached from a "workstation"
namespace on the same bridge (198.18.0.0/16, never routed; the root namespace has no route).

Modules: `rootfs` (the cached debootstrap tree), `network` (namespaces, bridge, veths),
`sshkeys` (client key, host keys, known_hosts), `machine` (one nspawn machine: boot, sh,
stop/start, freeze/thaw), `testbed` (a session of them plus the spec and teardown), `sweep`
(leftovers of crashed sessions).

In tests use the session fixture `testbed` (tests/conftest.py; root only, skipped with the
reason elsewhere): three machines node-1..node-3 booted once per session and shared, more on
demand. API:

    bed.machines["node-1"] / bed.machine("node-1") -> Machine
    with bed.extra_machine("twin", hostname="node-1") as m: ...     # a test's own machine
    bed.boot([...]) / bed.discard(machine)            # the same, by hand
    bed.workstation.run(argv) -> CompletedProcess      # argv in the workstation namespace
    bed.workstation.rke2ha("preflight", "-f", spec)    # this checkout's rke2ha, there
    bed.workstation.ssh(machine, "cmd", user="rke2ha") # OpenSSH, strict host key checking
    bed.client_key, bed.client_key.with_suffix(".pub"), bed.known_hosts   # paths
    bed.write_known_hosts(path, machines) / bed.spec(...) / bed.write_spec(path, ...)
    bed.renew_host_keys(machine)   # new keys in the machine and in bed.known_hosts only
    machine.address, .hostname, .name, .netns
    machine.sh("cmd", timeout=60, input=None, check=False) -> CompletedProcess (root, inside)
    machine.stop() / .start() / .kill() / .freeze() / .thaw() / .running / .frozen
    machine.set_hostname(name) / .regenerate_host_keys() / .host_key_fingerprint("ed25519")

Users in every machine: root, `rke2ha` (passwordless sudo), `nosudo` (sudo asks for a
password); all three accept the session's client key. A test that changes a shared machine
puts it back (or uses `bed.extra_machine`).

What a machine shares with the host kernel, so cannot differ between machines: the clock and
its synchronised flag (systemd-timesyncd skips containers, ConditionVirtualization=!container),
swap, CPU count, memory and the kernel. A stopped machine's address answers nothing ("No
route to host"); a frozen one completes TCP handshakes and never speaks (the SSH banner
exchange times out)."""

from tests.support.machines.machine import Machine, MachineError
from tests.support.machines.testbed import Testbed, Workstation

__all__ = ["Machine", "MachineError", "Testbed", "Workstation"]
