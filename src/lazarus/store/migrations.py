"""Numbered schema migrations of the SQLite store, recorded in `schema_migrations`.

`MIGRATIONS` is the ordered list of (number, name, sql). `apply()` (called by
`SqliteStore.open`) runs each migration whose number is not yet recorded, in order, each in its
own transaction together with the row that records it, so a failing migration leaves nothing
behind. Re-opening a store applies only the new ones. A database recorded at a higher number
than this code knows is refused rather than guessed at.

Adding a migration (e.g. the hook tables) is an append to the tuple below, never an edit of an
existing entry (databases in the field have already run those):

    Migration(2, "hooks", '''
        CREATE TABLE hooks (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL);
    '''),

Write new ids as a row in `counters` (see sqlite.py `_next_id`), not AUTOINCREMENT, so they
start at 0 and are never reused. Keep the SQL portable (TEXT, INTEGER, REAL, CAST,
substr/instr, partial indexes, ALTER TABLE ADD COLUMN): PostgreSQL runs this same list through
store/pg_migrations.py `translate()` (INTEGER -> BIGINT, REAL -> DOUBLE PRECISION, ...), so a
portable migration needs nothing more. No PRAGMA, json_*(), INSERT OR REPLACE, or
AUTOINCREMENT in new migrations; if one cannot be portable, give PostgreSQL its text in
pg_migrations.OVERRIDES under the same number.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from lazarus.domain.errors import InternalError

from .hooks import SCHEMA as HOOKS_SCHEMA


class Migration(NamedTuple):
    number: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        """
        CREATE TABLE counters (kind TEXT PRIMARY KEY, next_id INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE hosts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            state INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE TABLE vms (
            id INTEGER PRIMARY KEY,
            state INTEGER NOT NULL,
            lcm_state INTEGER NOT NULL,
            host_id INTEGER,
            owner INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX vms_state ON vms (state);
        CREATE INDEX vms_host_id ON vms (host_id);
        CREATE INDEX vms_owner ON vms (owner);
        CREATE TABLE datastores (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL);
        CREATE TABLE clusters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            body TEXT NOT NULL
        );
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            obj TEXT NOT NULL,
            obj_id INTEGER NOT NULL,
            state TEXT NOT NULL,
            lcm_state TEXT NOT NULL,
            line TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX events_kind ON events (kind, id);
        CREATE INDEX events_obj ON events (obj, obj_id, id);
        """,
    ),
    Migration(2, "hooks", HOOKS_SCHEMA),  # store/hooks.py
    # The rendered short body of each VM (store/rendered.py). Rows from before this migration
    # hold NULL until SqliteStore.open fills them (rendered.refresh): SQL cannot render them.
    Migration(3, "vm short bodies", "ALTER TABLE vms ADD COLUMN short_xml TEXT;"),
    # Typed events (domain/entities.py EventKind): listeners read fields, never the line.
    # Rows from before: "log" notes and the inventory's "api" notes become "note" (an "api"
    # row is a hooked API call only with obj API; its method was its line); flag rows were
    # all RESCHED; a note names its object by the subject its line begins with. Reading old
    # lines here, once, is what lets nothing read them afterwards.
    Migration(
        4,
        "typed events",
        """
        ALTER TABLE events ADD COLUMN flag TEXT NOT NULL DEFAULT '';
        ALTER TABLE events ADD COLUMN value TEXT NOT NULL DEFAULT '';
        ALTER TABLE events ADD COLUMN method TEXT NOT NULL DEFAULT '';
        UPDATE events SET method = line WHERE kind = 'api' AND obj = 'API';
        UPDATE events SET kind = 'note' WHERE kind = 'log' OR (kind = 'api' AND obj <> 'API');
        UPDATE events SET flag = 'RESCHED',
            value = CASE WHEN instr(line, ': RESCHED=1') > 0 THEN '1' ELSE '0' END
            WHERE kind = 'flag';
        UPDATE events SET obj = 'HOST',
            obj_id = CAST(substr(line, 6, instr(line, ' ') - 6) AS INTEGER)
            WHERE kind = 'note' AND obj = '' AND line LIKE 'host/% %';
        UPDATE events SET obj = 'VM',
            obj_id = CAST(substr(line, 4, instr(line, ' ') - 4) AS INTEGER)
            WHERE kind = 'note' AND obj = '' AND line LIKE 'vm/% %';
        UPDATE events SET obj = 'DATASTORE',
            obj_id = CAST(substr(line, 11, instr(line, ' ') - 11) AS INTEGER)
            WHERE kind = 'note' AND obj = '' AND line LIKE 'datastore/% %';
        UPDATE events SET obj = 'CLUSTER',
            obj_id = CAST(substr(line, 9, instr(line, ' ') - 9) AS INTEGER)
            WHERE kind = 'note' AND obj = '' AND line LIKE 'cluster/% %';
        """,
    ),
)

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""


def check(migrations: Sequence[Migration]) -> None:
    """Numbers must be 1, 2, 3, ... in order (a gap or a reorder is a merge mistake)."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.number != expected:
            raise ValueError(
                f"migration {migration.name!r} has number {migration.number}, expected {expected}"
            )


def applied(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:
    """(version, name, applied_at) of every recorded migration, in order."""
    rows = conn.execute(
        "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [(int(v), str(n), str(a)) for v, n, a in rows]


def apply(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded; returns their numbers. `conn` is in autocommit
    mode (isolation_level=None); each migration is one BEGIN IMMEDIATE ... COMMIT."""
    check(migrations)
    conn.execute(_TABLE)
    done = {version for version, _, _ in applied(conn)}
    newest = max(done, default=0)
    if newest > len(migrations):
        raise InternalError(
            f"Store schema version {newest} is newer than this Lazarus knows "
            f"({len(migrations)}); refusing to open it."
        )
    ran: list[int] = []
    for migration in migrations:
        if migration.number in done:
            continue
        try:
            # executescript() would COMMIT a pending transaction first, so BEGIN is part of
            # the script; the recording row and the COMMIT follow as plain statements.
            conn.executescript("BEGIN IMMEDIATE;\n" + migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                (migration.number, migration.name),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        ran.append(migration.number)
    return ran
