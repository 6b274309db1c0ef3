"""Moving an installation from SQLite to PostgreSQL (`lazarus db copy`) changes no document.

A real daemon on SQLite gets hosts, VMs, a hook that ran, and so history, events and hook
records; it is stopped, its store is copied to a fresh PostgreSQL database with the `lazarus
db copy` command, and the same data directory is served again, once from the SQLite file and
once from PostgreSQL. Every document a client reads (the pools, each host, VM and hook, the
hook log) must be byte for byte the same from both, read the same way after the same kind of
start. The daemon runs with a monitoring interval far beyond the test, so nothing it does at
start changes a VM, hook or pool document between the two reads. Hosts carry live monitoring
values (the probe at start refreshes them, at its own moment): their documents, with every
other object's, are compared from the two stores offline, rendered exactly as the API renders
them. Then the PostgreSQL daemon goes on working:
a new VM gets the id the SQLite one would have given it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.daemon import FAST_SETTINGS, Daemon, wait_for
from lazarus.domain.xml import datastore_xml, host_xml, vm_xml
from lazarus.domain.xml.hooks import hook_xml
from lazarus.store.postgres import PostgresStore
from lazarus.store.sqlite import SqliteStore

QUIET = {**FAST_SETTINGS, "MONITORING_INTERVAL_HOST": "3600", "SCHED_INTERVAL": "3600"}
DOCUMENTS = (
    ("one.vmpool.info", -2, -1, -1, -1),
    ("one.vmpool.infoextended", -2, -1, -1, -1),
    ("one.hookpool.info", -2, -1, -1),
    ("one.hooklog.info", -1, -1, -1, 0),
    ("one.datastorepool.info",),
    ("one.clusterpool.info",),
)


def documents(client: Any) -> dict[str, str]:
    out = {" ".join(map(str, call)): str(client.call(*call)) for call in DOCUMENTS}
    for vm_id in range(4):
        out[f"vm {vm_id}"] = str(client.call("one.vm.info", vm_id))
    out["hook 0"] = str(client.call("one.hook.info", 0))
    return out


def test_documents_are_the_same_after_moving_to_postgresql(
    tmp_path: Path, pg_server: Any, pg_database: str
) -> None:
    pg_url = pg_server.url(pg_database)
    data = tmp_path / "data"
    daemon = Daemon(data)
    try:
        daemon.start()
        client = daemon.client()
        hosts = [client.call("one.host.allocate", f"n{i}", "sim", "sim", -1) for i in range(3)]
        hook = Path(tmp_path / "hook.sh")
        hook.write_text("#!/bin/sh\necho ran $1\n")
        hook.chmod(0o755)
        client.call("one.hook.allocate", f'NAME = "notify"\nTYPE = "state"\nCOMMAND = "{hook}"\n'
                    'ARGUMENTS = "$ID"\nRESOURCE = "VM"\nON = "RUNNING"\n')  # fmt: skip
        wait_for("hosts MONITORED", lambda: all(
            "<STATE>2</STATE>" in client.call("one.host.info", h) for h in hosts))  # fmt: skip
        for n in range(4):
            client.call("one.vm.allocate", f'NAME = "vm{n}"\nCPU = 0.1\nMEMORY = 64\n', False)
        wait_for("VMs RUNNING and the hook run", lambda: (
            client.call("one.vmpool.info", -2, -1, -1, 3).count("<LCM_STATE>3</LCM_STATE>") == 4
            and client.call("one.hooklog.info", -1, -1, -1, 0).count("<EXECUTION_ID>") >= 4))
        client.call("one.vm.action", "terminate-hard", 3)  # a DONE VM in the history too
        wait_for("VM 3 DONE", lambda: "<STATE>6</STATE>" in client.call("one.vm.info", 3))
        client.close()
        daemon.stop()
        # before: the SQLite store, served again after a quiet start
        daemon = Daemon(data, QUIET)
        daemon.start()
        client = daemon.client()
        before = documents(client)
        client.close()
        daemon.stop()
        copied = subprocess.run(
            [sys.executable, "-m", "lazarus.cli.main", "db", "copy", "--from",
             f"sqlite:{data / 'lazarus.db'}", "--to", pg_url, "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert copied.returncode == 0, copied.stderr
        assert "verified identical" in copied.stdout
        # the stores themselves, offline: every object rendered as the API renders it
        sqlite_docs = rendered(SqliteStore.open(data / "lazarus.db"))
        pg_docs = rendered(PostgresStore.open(pg_server.conninfo(pg_database)))
        assert sqlite_docs == pg_docs
        # after: the same data directory (credentials, simulated cluster) on PostgreSQL; the
        # SQLite file is moved away, so nothing can be read from it by mistake
        shutil.move(data / "lazarus.db", tmp_path / "old.db")
        daemon = Daemon(data, QUIET, db=pg_url)
        daemon.start()
        client = daemon.client()
        after = documents(client)
        differ = [key for key in before if before[key] != after[key]]
        assert not differ, f"documents differ after the copy: {differ}"
        vm_id = client.call("one.vm.allocate", 'NAME = "next"\nCPU = 0.1\nMEMORY = 64\n', False)
        assert vm_id == 4
        client.close()
    finally:
        daemon.close()


def rendered(store: Any) -> dict[str, str]:
    """Every document the API renders from the store's rows, by object."""
    try:
        docs = {f"host {h.id}": host_xml(h) for h in store.hosts()}
        docs |= {f"vm {v.id}": vm_xml(v) for v in store.vms(include_done=True)}
        docs["vmpool"] = "".join(store.vm_short_bodies(include_done=True))
        docs |= {f"hook {k.id}": hook_xml(k, store.hook_records(k.id)) for k in store.hooks()}
        docs |= {f"datastore {d.id}": datastore_xml(d) for d in store.datastores()}
        docs["events"] = repr(store.events(limit=100_000))
        return docs
    finally:
        store.close()
