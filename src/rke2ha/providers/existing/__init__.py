"""`provider: existing`: the nodes already run; rke2ha runs the load balancer and the DNS.

On the load balancer host, `up` renders the chosen engine's config into the state folder,
checks it with the engine's own binary (`haproxy -c`, `nginx -t`, or the built-in load
balancer's own loader), starts the engine as rke2ha's own process or reloads it with the
engine's documented signal, then publishes the DNS record through `dns.provider`. `down`
stops only the process it started (pid and command line verified) and unpublishes only
a record it owns. Where rke2ha is root and systemd is PID 1 the engine is an enabled
systemd unit instead (`unitengine.py`), and `down` undoes only what rke2ha did there.
"""
