"""The built-in load balancer: health and pool (pure), relay, frontends, admin.

Layer 4 lives in this package's top-level modules; layer 7 (`lb.l7`) builds on the same
pool, health checks, admin endpoint and reload (docs/architecture.md: The built-in load
balancer).
"""
