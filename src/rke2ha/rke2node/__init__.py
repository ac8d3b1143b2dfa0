"""RKE2 on the server nodes over SSH (`rke2.install`): artifacts, the steps per node, the
readiness gate, the kubeconfig. `decide` and `artifacts` are pure; `remote` and `gate` talk
to the nodes."""
