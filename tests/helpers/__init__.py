"""Reusable test helpers (daemons, fixtures); tests import them as `helpers.<module>`."""
