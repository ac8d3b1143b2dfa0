"""The SSH side of RKE2 on one server node: read its facts, upload and check the
artifacts, run `decide`'s steps, read its kubeconfig and its journal.

Every failure is an InvalidError naming the node and the fix. Uploads go to a private
temporary folder of the login user (SFTP writes as that user) and are removed afterwards,
also when their sums do not match.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

from rke2ha.errors import InvalidError
from rke2ha.rke2node.artifacts import Artifact
from rke2ha.rke2node.decide import (
    KUBECONFIG,
    UNIT,
    NodeFacts,
    Step,
    facts_script,
    parse_facts,
)
from rke2ha.ssh.connection import Connection

# install.sh unpacks the tarball and copies the images; the upload of a real release
# (~800 MB of images) over a slow link takes a while as well.
INSTALL_TIMEOUT = 900.0
UPLOAD_TIMEOUT = 1800.0
Note = Callable[[str], None]


async def read_facts(conn: Connection, manifest_names: list[str]) -> NodeFacts:
    result = await conn.run(facts_script(manifest_names))
    if not result.ok:
        raise InvalidError(
            f"node {conn.target.node}: could not read its RKE2 facts:\n{result.tail()}"
        )
    return parse_facts(result.stdout)


async def upload(conn: Connection, artifacts: Sequence[Artifact]) -> str:
    """Copy the artifacts to a new private folder; the folder (`verify` checks them)."""
    node = conn.target.node
    # Folders a killed run left behind (this login user's only) go first.
    await conn.run(
        "find /tmp -maxdepth 1 -name 'rke2ha-artifacts.*' -user \"$(id -u)\" -exec rm -rf {} +",
        root=False,
    )
    made = await conn.run("mktemp -d /tmp/rke2ha-artifacts.XXXXXX", root=False)
    folder = made.stdout.strip()
    if not made.ok or not folder.startswith("/tmp/rke2ha-artifacts."):
        raise InvalidError(f"node {node}: cannot make a temporary folder in /tmp:\n{made.tail()}")
    try:
        for artifact in artifacts:
            await conn.put(artifact.path, f"{folder}/{artifact.name}", UPLOAD_TIMEOUT)
    except BaseException:
        await remove(conn, folder)
        raise
    return folder


async def verify(conn: Connection, folder: str, artifacts: Sequence[Artifact]) -> None:
    """`sha256sum -c` on the node against the sums taken on this machine (given on stdin);
    a mismatch removes the folder. GNU sha256sum -c reads `<sha256>  <file>` lines (its own
    output format, sha256sum(1), man7.org) and prints `<file>: OK` or `<file>: FAILED` per
    line, exiting 1 when any fails (coreutils 9, run here)."""
    node = conn.target.node
    expected = "".join(f"{a.sha256}  {a.name}\n" for a in artifacts)
    try:
        checked = await conn.run(
            f"cd {shlex.quote(folder)} && sha256sum -c -", root=False, input=expected
        )
        passed = {
            line.rsplit(": ", 1)[0]
            for line in checked.stdout.splitlines()
            if line.rsplit(": ", 1)[-1] == "OK"
        }
        failed = [a for a in artifacts if a.name not in passed]
        if failed:
            raise InvalidError(
                f"node {node}: {failed[0].name} arrived changed (its sha256 there is not the "
                f"{failed[0].sha256[:16]}... sent); the upload was removed, nothing installed; "
                f"fix: check the disk and network of {node}, then run up again"
            )
        if not checked.ok:
            raise InvalidError(
                f"node {node}: sha256sum -c in {folder} failed:\n{checked.tail()}\nthe upload "
                "was removed, nothing installed; fix: check that coreutils' sha256sum is there"
            )
    except BaseException:
        await remove(conn, folder)
        raise


async def remove(conn: Connection, folder: str) -> None:
    if folder.startswith("/tmp/rke2ha-artifacts."):
        await conn.run(f"rm -rf {shlex.quote(folder)}", root=False)


async def run_step(conn: Connection, step: Step) -> None:
    node = conn.target.node
    limit = INSTALL_TIMEOUT if step.kind == "install" else None
    result = await conn.run(step.command, timeout=limit, input=step.input)
    if result.ok:
        return
    if step.kind == "install":
        raise InvalidError(
            f"node {node}: install.sh failed (`{step.command}`); its last lines:\n"
            f"{result.tail(15)}\nfix: correct the cause on {node} and run up again "
            "(nothing else was changed there)"
        )
    raise InvalidError(
        f"node {node}: {step.what} failed (`{step.command}`):\n{result.tail()}"
        f"{await journal(conn) if step.kind in ('start', 'restart') else ''}"
    )


async def journal(conn: Connection, lines: int = 20) -> str:
    """The unit's last lines (systemctl only says "see journalctl"; the cause is there)."""
    said = await conn.run(f"journalctl -u {UNIT} -n {lines} --no-pager -o cat")
    if not said.ok or not said.stdout.strip():
        return ""
    return f"\n`journalctl -u {UNIT}` on {conn.target.node} ends with:\n{said.tail(lines)}"


async def clock(conn: Connection) -> str:
    """The node's time in seconds since the epoch, for `journalctl --since @<seconds>`."""
    said = await conn.run("date +%s", root=False)
    return said.stdout.strip() if said.ok and said.stdout.strip().isdigit() else "0"


async def fatal_since(conn: Connection, since: str) -> str:
    """The unit's last `level=fatal` lines (RKE2 logs through logrus) logged since `since`
    (systemd.time(7): `@<seconds>` is a time since the epoch)."""
    said = await conn.run(
        f"journalctl -u {UNIT} --since @{since} --no-pager -o cat | grep 'level=fatal' | tail -n 3"
    )
    return said.stdout.strip() if said.ok else ""


async def kubeconfig(conn: Connection) -> str | None:
    """RKE2's rke2.yaml (root only), or None while the server has not written it."""
    result = await conn.run(f"cat {KUBECONFIG} 2>/dev/null")
    return result.stdout if result.ok and result.stdout.strip() else None
