"""The built-in load balancer at layer 7: TLS termination, a strict HTTP/1.1 front,
redirect of port 80, cookie affinity, websockets, and a keep-alive proxy to the nodes' port 80.

Decisions are sans-I/O and tested without sockets: `http_front` (strict request reading),
`http_back` (node responses), `response` (one response relayed, for both paths),
`headers` (the hop's rewriting), `redirect`, `affinity`, `retry`, `accesslog`, `pages`.
The asyncio adapters are thin: `proxy` (one session per client) with `exchange` (its node
side) and `fast` (bodiless requests in callbacks), `tunnel` (websockets), `backend_conns`
(keep-alive pool), `tls` (context and reload), `frontend` (the `https` and `redirect`
kinds of frontend of the one `LoadBalancer`, which brings config, pools, checks, admin,
reload, drain and workers). `pool_adapter` reads the pool's health.
"""
