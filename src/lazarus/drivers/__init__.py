"""Adapters: each third-party library or OS facility lives in exactly one module here."""
