"""Monitoring records (core/monitoring_records.py, store/monitoring.py) and their methods
(api/monitoring.py): bounded history, retention, documents against the XSDs, accounting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.core import Harness
from helpers.xsd import validate
from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.local import LocalClient
from lazarus.api.stack import build_dispatcher
from lazarus.core.settings import Settings
from lazarus.domain.entities import User
from lazarus.domain.errors import NoExistsError


@pytest.fixture
def h() -> Iterator[Harness]:
    settings = Settings(
        host_monitoring_expiration_time=100,
        vm_monitoring_expiration_time=50,
        monitoring_record_interval=10,
    )
    harness = Harness(hosts=2, settings=settings)
    with harness.store.transaction() as tx:
        tx.add_user(User(id=-1, name="oneadmin", password_hash=hash_password("pw")))
    harness.monitored()
    yield harness
    harness.close()


def client(h: Harness) -> LocalClient:
    def run(fn):  # type: ignore[no-untyped-def]
        async def on_loop():  # type: ignore[no-untyped-def]
            return fn()

        return h.run(on_loop())

    return LocalClient(
        build_dispatcher(h.controller, Authenticator(h.store.user_by_name), run=run), "oneadmin:pw"
    )


def test_samples_are_recorded_bounded_and_served(h: Harness) -> None:
    vm_id = h.running_vm("m", host="node1")
    with h.store.transaction() as tx:  # what a driver reports (the simulated one reports none)
        vm = tx.vm(vm_id)
        vm.monitoring = {"CPU": "1.5", "MEMORY": "1024", "NETRX": "10"}
        tx.save_vm(vm)
    api = client(h)
    h.advance(35)  # the recorder's loop samples every 10 s, the monitor probes every 5 s
    host_doc = api.call("one.host.monitoring", 0)
    assert 3 <= host_doc.count("<MONITORING>") <= 4
    assert host_doc.startswith("<MONITORING_DATA><MONITORING><TIMESTAMP>")
    vm_doc = api.call("one.vm.monitoring", vm_id)
    assert vm_doc.count("<MONITORING>") >= 3 and f"<ID>{vm_id}</ID>" in vm_doc
    validate("monitoring_data.xsd", vm_doc)
    last = api.call("one.hostpool.monitoring", 0)
    assert last.count("<MONITORING>") == 2  # the newest of each host
    assert api.call("one.hostpool.monitoring", -1).count("<MONITORING>") >= 6
    h.advance(200)  # retention: 100 s for hosts
    kept = h.store.monitoring_records("host", 0)
    stamps = [t for _, t, _ in kept]
    assert stamps and min(stamps) >= int(h.clock.now()) - 100 - 10
    assert len(kept) <= 11
    with pytest.raises(NoExistsError):
        api.call("one.host.monitoring", 99)
    with pytest.raises(NoExistsError):
        api.call("one.vm.monitoring", 99)


def test_a_restart_does_not_duplicate_samples_and_zero_records_nothing(h: Harness) -> None:
    h.advance(12)
    first = h.controller.records.sample()
    again = h.controller.records.sample()
    assert again == (0, 0) and first[0] <= 2
    recorder = type(h.controller.records)(h.store, h.clock, h.settings)  # a new daemon
    recorder.sample()
    stamps = [(i, t) for i, t, _ in h.store.monitoring_records("host")]
    assert len(stamps) == len(set(stamps))
    h.settings.host_monitoring_expiration_time = 0
    h.settings.vm_monitoring_expiration_time = 0
    before = len(h.store.monitoring_records("host"))
    h.advance(30)
    assert len(h.store.monitoring_records("host")) == before


def test_accounting_lists_history_records_with_their_vm(h: Harness) -> None:
    vm_id = h.running_vm("acct", host="node2")
    api = client(h)
    document = api.call("one.vmpool.accounting", -2, -1, -1)
    validate("acct.xsd", document)
    assert f"<OID>{vm_id}</OID>" in document and "<VM><ID>" in document
    assert api.call("one.vmpool.accounting", -2, 0, 1) == "<HISTORY_RECORDS></HISTORY_RECORDS>"
    validate("monitoring_data.xsd", api.call("one.vmpool.monitoring", -2, -1))
