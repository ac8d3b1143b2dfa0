"""`L7Config`: everything the layer 7 front needs, from the spec or from flags (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rke2ha.lb.config import HealthConfig
from rke2ha.lb.l7.nodes import Balance

HostPort = tuple[str, int]


@dataclass(frozen=True)
class L7Config:
    listen: HostPort
    hostname: str
    cert: Path
    key: Path
    backends: tuple[HostPort, ...]
    redirect_from: HostPort | None = None
    redirect_code: Literal[301, 308] = 308
    acme_passthrough: bool = False
    affinity: bool = False
    affinity_secret_file: Path | None = None
    affinity_secret: bytes | None = field(default=None, repr=False)
    balance: Balance = "leastconn"
    connect_timeout: float = 5.0
    http_timeout: float = 1800.0
    header_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    retries: int = 2
    max_connections: int = 10_000  # per listener; beyond it clients wait in the backlog
    drain_timeout: float = 30.0
    forwarded_port: int = 443
    access_log: str | None = "-"
    admin: HostPort | None = None
    names: dict[str, str] = field(default_factory=dict)  # backend key -> node name
    health: HealthConfig = field(default_factory=HealthConfig)
