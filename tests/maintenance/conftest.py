"""The load balancer tests' `start_lb` fixture (the real `rke2ha lb serve` process)."""

from tests.lb.conftest import start_lb

__all__ = ["start_lb"]
