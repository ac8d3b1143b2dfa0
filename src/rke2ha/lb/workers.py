"""Running the load balancer: one process, or `--workers N` processes on the same ports.

With one worker everything runs in this process. With N (uvicorn's `supervisors/` idea):

- The supervisor (this process) runs the health checks and the admin endpoint and owns
  one shared-memory block per *generation* of workers. It writes every backend's health
  state there every `SYNC_INTERVAL` and reads the workers' counters back.
- Each worker is a fresh interpreter (`python -m rke2ha.lb.workers`, config pickled on
  stdin: no fork of a running event loop) that binds every frontend with SO_REUSEPORT
  (the kernel spreads clients over the workers), runs the data plane (layer 4 relays and
  layer 7 frontends alike, by each frontend's kind; the cookie affinity key is made here
  first, so a cookie pins the same node whichever worker reads it), adopts the
  supervisor's health states, and publishes its counters and passive failures. A refused
  connect takes the backend down in that worker at once and, through its
  `connect_failures` counter, in the supervisor (and so every worker) on the next sync.
- SIGHUP: the supervisor re-reads the spec, applies it to its checks, starts a new
  generation of workers with the new config, waits until they listen, then SIGTERMs the
  old generation, which stops accepting and drains: the SO_REUSEPORT handover, inside
  one supervisor. SIGTERM: every worker drains, then the supervisor exits.

Layout of the shared block (int64 cells): `[ready per worker] [state per backend slot]
[per worker: per slot 5 backend counters] [per worker: per frontend 7 frontend counters]`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing import resource_tracker, shared_memory
from typing import Any

from rke2ha.errors import Rke2haError
from rke2ha.lb import loops
from rke2ha.lb.admin import Snapshot
from rke2ha.lb.config import LbConfig
from rke2ha.lb.frontend import bind_listener
from rke2ha.lb.health_state import State
from rke2ha.lb.server import LoadBalancer, reread

log = logging.getLogger("rke2ha.lb")

SYNC_INTERVAL = 0.05
_STATES = list(State)
_BE_FIELDS = ("active", "total", "bytes_in", "bytes_out", "connect_failures")
_FE_FIELDS = ("active", "total", "retries", "failovers", "failed", "bytes_up", "bytes_down")


@dataclass
class Layout:
    workers: int
    slots: int  # backends over all frontends, in config order
    frontends: int

    @property
    def size(self) -> int:
        cells = self.workers + self.slots
        cells += self.workers * self.slots * len(_BE_FIELDS)
        cells += self.workers * self.frontends * len(_FE_FIELDS)
        return cells * 8

    def ready(self, worker: int) -> int:
        return worker

    def state(self, slot: int) -> int:
        return self.workers + slot

    def backend(self, worker: int, slot: int, field: int) -> int:
        base = self.workers + self.slots
        return base + (worker * self.slots + slot) * len(_BE_FIELDS) + field

    def frontend(self, worker: int, index: int, field: int) -> int:
        base = self.workers + self.slots + self.workers * self.slots * len(_BE_FIELDS)
        return base + (worker * self.frontends + index) * len(_FE_FIELDS) + field


def layout_of(config: LbConfig) -> Layout:
    slots = sum(len(f.backends) for f in config.frontends)
    return Layout(config.workers, slots, len(config.frontends))


def _cells(shm: shared_memory.SharedMemory) -> memoryview:
    buffer = shm.buf
    assert buffer is not None
    return buffer.cast("q")


def check_certificate(config: LbConfig) -> None:
    """The layer 7 certificate and key load and cover the hostname (Rke2haError if not)."""
    from rke2ha.lb.l7.tls import load_certificate

    assert config.l7 is not None
    load_certificate(config.l7.cert, config.l7.key, config.l7.hostname)


def serve(config: LbConfig, reload_source: Callable[[], LbConfig] | None) -> int:
    """Run until SIGTERM; the exit code of `rke2ha lb serve`."""
    if config.l7 is not None:
        check_certificate(config)  # one message before anything binds, not one per worker
    if config.workers == 1:
        lb = LoadBalancer(config, reload_source=reload_source)
        loops.run(lb.serve())
        return 0
    # Fail here, with a clear message, for an address no worker could bind.
    for fc in config.frontends:
        bind_listener(fc.host, fc.port).close()
    return loops.run(Supervisor(config, reload_source).serve())


# ---- the supervisor ---------------------------------------------------------------------------


class Generation:
    """Worker processes sharing one config and one shared-memory block."""

    def __init__(self, config: LbConfig) -> None:
        self.config = config
        self.layout = layout_of(config)
        self.shm = shared_memory.SharedMemory(create=True, size=self.layout.size)
        self.cells = _cells(self.shm)
        self.closed = False
        self.procs: list[subprocess.Popen[bytes]] = []
        payload = pickle.dumps(config)
        try:
            for index in range(config.workers):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "rke2ha.lb.workers", self.shm.name, str(index)],
                    stdin=subprocess.PIPE,
                )
                self.procs.append(proc)
                assert proc.stdin is not None
                proc.stdin.write(payload)
                proc.stdin.close()
        except BaseException:
            # No process limit or full pipe may leave the block behind (the resource
            # tracker would report it leaked at exit) nor workers without a supervisor.
            self.terminate()
            for proc in self.procs:
                proc.wait()
            self.close()
            raise

    def all_ready(self) -> bool:
        return all(self.cells[self.layout.ready(w)] == 1 for w in range(len(self.procs)))

    def failed(self) -> bool:
        return any(p.poll() is not None for p in self.procs)

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    async def wait(self) -> None:
        while any(p.poll() is None for p in self.procs):
            await asyncio.sleep(0.05)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.cells.release()
        self.shm.close()
        self.shm.unlink()


class Supervisor:
    def __init__(self, config: LbConfig, reload_source: Callable[[], LbConfig] | None) -> None:
        self.lb = LoadBalancer(config, reload_source=None, data_plane=False)
        self.reload_source = reload_source
        self.generation: Generation | None = None
        self.old: list[Generation] = []
        self._seen_failures: dict[tuple[int, int], int] = {}
        self._stop = asyncio.Event()
        self._affinity_secret: bytes | None = None

    async def serve(self) -> int:
        self.lb.decorate = self.aggregate
        loop = asyncio.get_running_loop()
        # Before the first workers start: a SIGTERM while they start up stops them and
        # frees the shared block, instead of killing the supervisor under them.
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        await self.lb.start()
        generation = await self._start_generation(self.lb.config)
        if generation is None:
            await self.lb.close()
            if self._stop.is_set():
                log.info("stopped")
                return 0
            return 1
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        sync = asyncio.create_task(self._sync_loop())
        stop = asyncio.create_task(self._stop.wait())
        dead = asyncio.create_task(self._watch())
        await asyncio.wait([stop, dead], return_when=asyncio.FIRST_COMPLETED)
        if self._stop.is_set():
            log.info("stopping: the workers drain")
        sync.cancel()  # it closes drained generations too: one closer from here on
        for gen in [*self.old, self.generation]:
            if gen is not None:
                gen.terminate()
        for gen in [*self.old, self.generation]:
            if gen is not None:
                await gen.wait()
                gen.close()
        stop.cancel()
        dead.cancel()
        await self.lb.close()
        log.info("stopped")
        return 0 if self._stop.is_set() else 1

    async def _watch(self) -> None:
        while self.generation is None or not self.generation.failed():
            await asyncio.sleep(0.2)
        log.error("a worker exited; stopping")

    def _shared_affinity(self, config: LbConfig) -> LbConfig:
        """`config` with the affinity key itself, so every worker signs cookies alike."""
        l7 = config.l7
        if l7 is None or not l7.affinity or l7.affinity_secret is not None:
            return config
        from rke2ha.lb.l7.affinity import affinity_key

        if self._affinity_secret is None or l7.affinity_secret_file is not None:
            self._affinity_secret = affinity_key(l7) or secrets.token_bytes(32)
        return replace(config, l7=replace(l7, affinity_secret=self._affinity_secret))

    async def _start_generation(self, config: LbConfig) -> Generation | None:
        generation = Generation(self._shared_affinity(config))
        self._publish(generation)
        while not generation.all_ready():
            if self._stop.is_set() or generation.failed():
                if self._stop.is_set():
                    log.info("stopping: while %d workers start", config.workers)
                else:
                    log.error("workers failed to start; keeping the previous generation")
                generation.terminate()
                await generation.wait()
                generation.close()
                return None
            await asyncio.sleep(0.02)
        if self.generation is not None:
            self.old.append(self.generation)
            self.generation.terminate()  # old workers stop accepting and drain
        self.generation = generation
        self._seen_failures.clear()
        log.info("%d workers listening", config.workers)
        return generation

    async def reload(self) -> None:
        new = reread(self.reload_source)
        if new is None:
            return
        if new.l7 is not None:
            # New workers load the certificate themselves: one that cannot be served is
            # refused here, and the running generation goes on with its own.
            try:
                check_certificate(new)
            except Rke2haError as err:
                log.error("reload failed, keeping the running configuration: %s", err)
                return
        self.lb.apply(await self.lb.move_admin(new))
        await self._start_generation(self.lb.config)

    def _slots(self) -> list[Any]:
        return [b for site in self.lb.sites for b in _config_order(site)]

    def _publish(self, generation: Generation) -> None:
        layout, cells = generation.layout, generation.cells
        for slot, backend in enumerate(self._slots()[: layout.slots]):
            # A node in maintenance reaches the workers as draining: no new connections.
            out = backend.maintenance_since is not None
            cells[layout.state(slot)] = _STATES.index(State.DRAINING if out else backend.state)

    async def _sync_loop(self) -> None:
        while True:
            generation = self.generation
            if generation is not None:
                self._collect_failures(generation)
                self._publish(generation)
            for gen in list(self.old):
                if all(p.poll() is not None for p in gen.procs):
                    self.old.remove(gen)
                    gen.close()
            await asyncio.sleep(SYNC_INTERVAL)

    def _collect_failures(self, generation: Generation) -> None:
        layout, cells = generation.layout, generation.cells
        field = _BE_FIELDS.index("connect_failures")
        sites = [s for s in self.lb.sites for _ in s.config.backends]
        for slot, backend in enumerate(self._slots()[: layout.slots]):
            total = sum(cells[layout.backend(w, slot, field)] for w in range(layout.workers))
            seen = self._seen_failures.get((id(generation), slot), 0)
            if total > seen:
                sites[slot].pool.connect_failed(backend, "refused or timed out in a worker")
                backend.connect_failures += total - seen - 1
            self._seen_failures[(id(generation), slot)] = total

    def aggregate(self, snap: Snapshot) -> Snapshot:
        """The supervisor's snapshot with the workers' connection counters summed in."""
        snap["relay"] = "per worker (splice when available)"
        # Counters of the current generation only: workers of an older generation are
        # draining after a reload, their slots follow the old config, and they stop
        # publishing once they drain (their connections are in their access logs).
        generations = [self.generation] if self.generation is not None else []
        for index, fe in enumerate(snap["frontends"]):
            for field, name in zip(
                _FE_FIELDS,
                (
                    "active",
                    "total",
                    "retries",
                    "failovers",
                    "failed",
                    "bytes_from_clients",
                    "bytes_to_clients",
                ),
                strict=True,
            ):
                fe[name] = sum(_sum_frontend(g, index, field) for g in generations)
        slot = 0
        for fe in snap["frontends"]:
            for be in fe["backends"][: len(fe["backends"])]:
                for field, name in zip(
                    _BE_FIELDS,
                    (
                        "active",
                        "total",
                        "bytes_from_backend",
                        "bytes_to_backend",
                        "connect_failures",
                    ),
                    strict=True,
                ):
                    if name != "connect_failures":
                        be[name] = sum(_sum_backend(g, slot, field) for g in generations)
                slot += 1
        return snap


def _config_order(site: Any) -> list[Any]:
    by_key = {b.key: b for b in site.pool.all()}
    return [by_key[b.key] for b in site.config.backends if b.key in by_key]


def _sum_frontend(gen: Generation, index: int, field: str) -> int:
    if index >= gen.layout.frontends:
        return 0
    i = _FE_FIELDS.index(field)
    return sum(gen.cells[gen.layout.frontend(w, index, i)] for w in range(gen.layout.workers))


def _sum_backend(gen: Generation, slot: int, field: str) -> int:
    if slot >= gen.layout.slots:
        return 0
    i = _BE_FIELDS.index(field)
    return sum(gen.cells[gen.layout.backend(w, slot, i)] for w in range(gen.layout.workers))


# ---- a worker -------------------------------------------------------------------------------


async def _worker_main(config: LbConfig, shm_name: str, index: int) -> None:
    shm = shared_memory.SharedMemory(name=shm_name)
    # Python 3.11 registers attached blocks too, and would unlink the supervisor's block
    # when this worker exits; the supervisor owns it.
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    cells = _cells(shm)
    try:
        await _serve_worker(config, cells, index)
    finally:
        # Even when the worker could not start: the view must go before the block closes.
        cells.release()
        shm.close()


async def _serve_worker(config: LbConfig, cells: memoryview, index: int) -> None:
    layout = layout_of(config)
    lb = LoadBalancer(config, data_plane=True, checks=False, admin=False)
    await lb.start()
    lb.install_signals()
    cells[layout.ready(index)] = 1
    stop = asyncio.create_task(lb._stop.wait())
    while not stop.done():
        slot = 0
        for f_index, site in enumerate(lb.sites):
            fe = site.frontend
            assert fe is not None
            values = (
                fe.active,
                fe.total,
                fe.retries,
                fe.failovers,
                fe.failed,
                fe.bytes_up,
                fe.bytes_down,
            )
            for field, value in enumerate(values):
                cells[layout.frontend(index, f_index, field)] = value
            for backend in _config_order(site):
                state = _STATES[cells[layout.state(slot)]]
                if not (
                    backend.state is State.DOWN
                    and state.serves
                    and backend.connect_failures > cells[layout.backend(index, slot, 4)]
                ):
                    backend.adopt(state, "from the supervisor's checks")
                counters = (
                    backend.active,
                    backend.total,
                    backend.bytes_in,
                    backend.bytes_out,
                    backend.connect_failures,
                )
                for field, value in enumerate(counters):
                    cells[layout.backend(index, slot, field)] = value
                slot += 1
        await asyncio.wait([stop], timeout=SYNC_INTERVAL)
    await lb.drain()


def worker_entry(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s rke2ha-lb[%(process)d] %(levelname)s %(message)s",
    )
    shm_name, index = argv[0], int(argv[1])
    config: LbConfig = pickle.loads(sys.stdin.buffer.read())
    try:
        loops.run(_worker_main(config, shm_name, index))
    except Rke2haError as err:
        print(f"rke2ha lb worker {index}: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(worker_entry(sys.argv[1:]))
