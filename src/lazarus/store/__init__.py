"""Store adapters (the Store port in ports/store.py): sqlite.py is the embedded default,
postgres.py the shared database (psycopg, the `postgres` extra; imported only when used);
sql.py holds the SQL both run, migrations.py the numbered schema (pg_migrations.py translates
it), codec.py the entity <-> JSON encoding. Only the composition roots (app/, sim/), the CLI's
store commands and tests import this package."""

from .sqlite import SqliteStore
from .url import StoreUrlError, open_store

__all__ = ["SqliteStore", "StoreUrlError", "open_store"]
