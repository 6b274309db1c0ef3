"""Ports: the small interfaces through which the core reaches time, storage and drivers."""
