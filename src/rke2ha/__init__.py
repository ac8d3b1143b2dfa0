"""rke2ha: build, serve and verify the infrastructure in front of an HA Rancher server on RKE2."""

__version__ = "0.1.0"
