"""The built-in load balancer at layer 7: TLS termination, a strict HTTP/1.1 front,
redirect of port 80, cookie affinity, websockets, and a keep-alive proxy to the nodes' port 80.

Decisions are sans-I/O and tested without sockets: `http_front` (strict request reading),
`http_back` (node responses), `headers` (the hop's rewriting), `redirect`, `affinity`,
`accesslog`, `pages`, `settings`. The asyncio adapters are thin: `proxy` (one session per
client) with `exchange` (its node side), `tunnel` (websockets), `backend_conns` (keep-alive
pool), `tls` (context and reload), `frontend` (a listener inside the layer 4
`LoadBalancer`, which brings pools, checks, admin, reload and drain), `server` (spec to
configuration, process, workers). `pool_adapter` reads the layer 4 pool's health; `cli`
holds the `lb serve` flags of layer 7.
"""
