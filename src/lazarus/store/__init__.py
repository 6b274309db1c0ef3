"""Store adapters (the Store port in ports/store.py): sqlite.py is the embedded default;
migrations.py holds its numbered schema, codec.py the entity <-> JSON encoding. Only the
composition roots (app/, sim/) and tests import this package."""

from .sqlite import SqliteStore

__all__ = ["SqliteStore"]
