"""`rke2ha preflight`: prove over SSH that the machines can hold an HA RKE2 cluster.

`gather` is the one read-only script run on each node and the splitting of its output;
`parsers` turn each section into values and `facts` collects them (all sans-I/O, tested
without SSH); `checks` judge one node's facts and the nodes together (hostnames, clock
skew); `pairs` plans and judges the probes between servers; `runner` does the I/O over
`rke2ha.ssh`; `report` prints. README: Pre-flight.
"""
