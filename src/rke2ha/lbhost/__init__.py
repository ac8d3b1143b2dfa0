"""The load balancer engine on machines of its own (`load_balancer.hosts`), run over SSH as
the host's systemd service: `requirements` (what the spec must say), `decide` (what to do
given the host's facts; pure), `remote` (the SSH adapter that reads facts and runs steps)."""
