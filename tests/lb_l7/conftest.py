"""Fixtures of the layer 7 tests: a backend loop thread, certificates, LB processes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import HOSTNAME, CertFiles, LbProcess, LoopThread, make_cert, start_lb


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def cert(tmp_path: Path) -> CertFiles:
    return make_cert(tmp_path / "tls", [HOSTNAME])


@pytest.fixture
def lb_factory(tmp_path: Path, cert: CertFiles) -> Iterator[Callable[..., LbProcess]]:
    started: list[LbProcess] = []

    def start(backends: list[str], *extra: str, **kwargs: Any) -> LbProcess:
        folder = tmp_path / f"lb{len(started)}"
        folder.mkdir()
        lb = start_lb(folder, kwargs.pop("cert_files", cert), backends, *extra, **kwargs)
        started.append(lb)
        return lb

    yield start
    for lb in started:
        lb.stop()
