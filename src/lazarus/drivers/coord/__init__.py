"""Coordination adapters: etcd (etcd.py) and the in-process one (memory.py)."""
