"""Benchmarks (`make bench`): rke2ha against HAProxy and nginx in the same run."""
