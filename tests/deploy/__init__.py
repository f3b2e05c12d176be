"""Offline checks of deploy/: Dockerfile, compose file, Kubernetes manifests, HPC config."""
